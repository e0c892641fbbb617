//! CONNECT: rule syntax, targets, the allow decision and the post-DNS check on arbitrary text;
//! Basic credentials on arbitrary header bytes, and users files (`policy::access`) on arbitrary
//! text.
#![no_main]
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use ringway::policy::access::{basic_credentials, parse_users, verify};
use ringway::policy::connect::{allowed, parse_target, usable, Rule, Target};

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
        // Any text as a users file: parsed or refused, never a panic (bcrypt lines are only
        // parsed here; verifying one costs milliseconds).
        let _ = parse_users(&target);
        if let (Some((user, password)), Ok(file)) = (
            basic_credentials(Some(&auth)),
            parse_users("alice:s3cret\n"),
        ) {
            if let Some(secret) = file.users.secret(&user) {
                let _ = verify(secret, &password);
            }
        }
    }
);
