//! CONNECT: rule syntax, targets, the allow decision and the post-DNS check on arbitrary text,
//! and Basic credentials on arbitrary header bytes.
#![no_main]
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use ringway::policy::connect::{allowed, authorized, parse_target, usable, Rule, Target};

fuzz_target!(
    |input: (Vec<String>, String, Vec<u8>, Vec<([u8; 4], u16)>)| {
        let (rules, target, auth, resolved) = input;
        let rules: Vec<Rule> = rules.iter().filter_map(|r| Rule::parse(r).ok()).collect();
        for r in &rules {
            // What a rule prints parses back to the same rule.
            assert_eq!(Rule::parse(&r.to_string()).as_ref(), Ok(r));
        }
        if let Some(t) = parse_target(&target) {
            let _ = allowed(&rules, &t);
            if let Target::Name(..) = t {
                let addrs: Vec<SocketAddr> = resolved
                    .iter()
                    .map(|(ip, p)| SocketAddr::from((*ip, *p)))
                    .collect();
                let ok = usable(&rules, &addrs);
                assert!(ok.iter().all(|a| addrs.contains(a)));
            }
        }
        let users = vec![("alice".to_string(), "s3cret".to_string())];
        let _ = authorized(Some(&auth), &users);
    }
);
