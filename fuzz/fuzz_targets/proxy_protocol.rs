//! PROXY protocol headers: any bytes parsed (never a panic, a complete header never longer
//! than the input); and what Ringway writes for any pair of addresses parses back to them.
#![no_main]
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use ringway::protocol::proxy_protocol::{parse, write_v1, write_v2, Parsed};

fuzz_target!(|input: (Vec<u8>, [u8; 16], [u8; 16], u16, u16, bool)| {
    let (data, a, b, pa, pb, v4) = input;
    if let Ok(Parsed::Complete { len, .. }) = parse(&data) {
        assert!(len <= data.len());
    }
    let ip = |o: [u8; 16]| -> IpAddr {
        if v4 {
            IpAddr::from([o[0], o[1], o[2], o[3]])
        } else {
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    let (src, dst) = (SocketAddr::new(ip(a), pa), SocketAddr::new(ip(b), pb));
    for write in [write_v1, write_v2] {
        let mut out = Vec::new();
        write(&mut out, src, dst);
        match parse(&out) {
            Ok(Parsed::Complete { len, source, dest }) => {
                assert_eq!(len, out.len());
                assert_eq!((source, dest), (Some(src), Some(dst)));
            }
            other => panic!("our own header did not parse: {other:?}"),
        }
    }
});
