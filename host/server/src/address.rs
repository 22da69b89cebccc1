//! Which IP addresses a scheduled callback may not reach.
//!
//! In serve mode the host itself makes the callback requests, from inside its
//! own network: a callback URL that resolves to loopback, a private range or
//! the cloud metadata service (169.254.169.254, 100.100.100.200,
//! fd00:ec2::254) would let whoever registers a schedule make the host call
//! its own admin endpoints, databases or credentials service (server-side
//! request forgery). Serve mode resolves a callback's host and refuses it
//! when any address is internal; this module only classifies, so that the
//! rule can be tested without a resolver or a network.
//!
//! Everything that is not a globally reachable unicast address counts as
//! internal, not just the private ranges: an address no public service can
//! have is never a legitimate callback target, and each range left out is one
//! more way in. IPv6 addresses that carry an IPv4 address the host may end up
//! connecting to (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by
//! that IPv4 address, since `::ffff:127.0.0.1` reaches loopback as surely as
//! `127.0.0.1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public address a callback may reach, or None when it is
/// public.
///
/// The reason is short and meant for people, e.g. `"loopback"` or
/// `"private (RFC 1918)"`; an IPv6 address that embeds an IPv4 address gets
/// the IPv4 address's reason.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    // 0.0.0.0/8 is "this network" (RFC 791): connecting to any of it reaches
    // the host itself on common stacks, not just 0.0.0.0.
    if a == 0 {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_private() {
        return Some("private (RFC 1918)");
    }
    // AWS, GCP and Azure serve instance credentials at 169.254.169.254.
    if ip.is_link_local() {
        return Some("link-local (incl. cloud metadata 169.254.169.254)");
    }
    // Shared address space (RFC 6598), `Ipv4Addr::is_shared` is unstable;
    // Alibaba Cloud's metadata service lives at 100.100.100.200.
    if a == 100 && (b & 0xc0) == 64 {
        return Some("carrier-grade NAT (100.64.0.0/10, incl. 100.100.100.200)");
    }
    // IETF protocol assignments (RFC 6890): a couple are anycast services,
    // none a callback target, so the whole /24 is refused.
    if a == 192 && b == 0 && c == 0 {
        return Some("reserved");
    }
    // TEST-NET-1, -2 and -3 (RFC 5737).
    if ip.is_documentation() {
        return Some("documentation");
    }
    // 198.18.0.0/15 (RFC 2544); `Ipv4Addr::is_benchmarking` is unstable.
    if a == 198 && (b & 0xfe) == 18 {
        return Some("benchmarking");
    }
    if ip.is_multicast() {
        return Some("multicast");
    }
    // Before the reserved check: 255.255.255.255 is inside 240.0.0.0/4.
    if ip.is_broadcast() {
        return Some("broadcast");
    }
    // 240.0.0.0/4, "future use" (RFC 1112); `Ipv4Addr::is_reserved` is
    // unstable.
    if a >= 240 {
        return Some("reserved");
    }
    None
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // First, as `::` and `::1` also have the IPv4-compatible form.
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // ::ffff:a.b.c.d: a dual-stack socket connects to a.b.c.d over IPv4.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    // ::a.b.c.d (IPv4-compatible, deprecated by RFC 4291): some stacks still
    // route it to a.b.c.d.
    if s[..6] == [0; 6] {
        return internal_v4(embedded_v4(s[6], s[7]));
    }
    // 64:ff9b::/96, the well-known NAT64 prefix (RFC 6052): a NAT64 gateway
    // forwards it to the IPv4 address in the last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return internal_v4(embedded_v4(s[6], s[7]));
    }
    // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): translated by the
    // operator's own gateway, to whatever IPv4 network it chooses.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some("IPv6 local-use NAT64 (64:ff9b:1::/48)");
    }
    // 2002::/16, 6to4 (RFC 3056): a host with a 6to4 interface sends it
    // encapsulated to the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return internal_v4(embedded_v4(s[1], s[2]));
    }
    if ip.is_multicast() {
        return Some("multicast");
    }
    // EC2's IPv6 metadata service is fd00:ec2::254.
    if ip.is_unique_local() {
        return Some("IPv6 unique local (fc00::/7, incl. fd00:ec2::254)");
    }
    // fe80::/10.
    if ip.is_unicast_link_local() {
        return Some("IPv6 link-local");
    }
    // fec0::/10, deprecated by RFC 3879 but still routable inside a site.
    if (s[0] & 0xffc0) == 0xfec0 {
        return Some("IPv6 site-local");
    }
    // 2001:db8::/32 (RFC 3849) and 3fff::/20 (RFC 9637);
    // `Ipv6Addr::is_documentation` is unstable.
    if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && (s[1] & 0xf000) == 0) {
        return Some("documentation");
    }
    // 2001:2::/48 (RFC 5180); `Ipv6Addr::is_benchmarking` is unstable.
    if s[0] == 0x2001 && s[1] == 2 && s[2] == 0 {
        return Some("benchmarking");
    }
    // 100::/64, discard-only (RFC 6666).
    if s[..4] == [0x100, 0, 0, 0] {
        return Some("reserved");
    }
    // 2001::/23, IETF protocol assignments (Teredo, ORCHID, AS112, ...):
    // none a callback target, so the whole block is refused.
    if s[0] == 0x2001 && (s[1] & 0xfe00) == 0 {
        return Some("reserved");
    }
    // Global unicast is 2000::/3; IANA has assigned nothing public outside
    // it, so what is left there is reserved or unallocated.
    if (s[0] & 0xe000) != 0x2000 {
        return Some("reserved");
    }
    None
}

/// The IPv4 address held in two IPv6 segments.
fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<&'static str> {
        internal(ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")))
    }

    /// Asserts that each of `ips` is internal and its reason mentions `word`.
    fn all_internal(ips: &[&str], word: &str) {
        for ip in ips {
            match reason(ip) {
                Some(why) => assert!(why.contains(word), "{ip}: {why:?} does not say {word:?}"),
                None => panic!("{ip} should be internal ({word})"),
            }
        }
    }

    fn all_public(ips: &[&str]) {
        for ip in ips {
            assert_eq!(reason(ip), None, "{ip} should be public");
        }
    }

    #[test]
    fn public_addresses_pass() {
        all_public(&[
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "93.184.215.14",
        ]);
    }

    #[test]
    fn ipv4_this_network_is_unspecified() {
        all_internal(&["0.0.0.0", "0.1.2.3", "0.255.255.255"], "unspecified");
        all_public(&["1.0.0.1"]);
    }

    #[test]
    fn ipv4_loopback() {
        all_internal(&["127.0.0.1", "127.255.255.254", "127.1.2.3"], "loopback");
        all_public(&["126.255.255.255", "128.0.0.1"]);
    }

    #[test]
    fn ipv4_private() {
        all_internal(
            &[
                "10.0.0.1",
                "10.255.255.255",
                "172.16.0.1",
                "172.31.255.255",
                "192.168.1.1",
            ],
            "private",
        );
        all_public(&["172.15.255.255", "172.32.0.0", "192.169.0.1", "11.0.0.1"]);
    }

    #[test]
    fn ipv4_link_local_incl_cloud_metadata() {
        all_internal(&["169.254.169.254", "169.254.0.1", "169.254.255.255"], "link-local");
        all_public(&["169.253.255.255", "169.255.0.1"]);
    }

    #[test]
    fn ipv4_carrier_grade_nat_incl_alibaba_metadata() {
        all_internal(
            &["100.64.0.0", "100.100.100.200", "100.127.255.255"],
            "carrier-grade NAT",
        );
        all_public(&["100.63.255.255", "100.128.0.0"]);
    }

    #[test]
    fn ipv4_documentation() {
        all_internal(&["192.0.2.1", "198.51.100.7", "203.0.113.255"], "documentation");
        all_public(&["203.0.114.1"]);
    }

    #[test]
    fn ipv4_benchmarking() {
        all_internal(&["198.18.0.1", "198.19.255.255"], "benchmarking");
        all_public(&["198.17.255.255", "198.20.0.0"]);
    }

    #[test]
    fn ipv4_multicast() {
        all_internal(&["224.0.0.1", "239.255.255.250"], "multicast");
    }

    #[test]
    fn ipv4_broadcast() {
        assert_eq!(reason("255.255.255.255"), Some("broadcast"));
    }

    #[test]
    fn ipv4_reserved() {
        all_internal(
            &["240.0.0.1", "255.255.255.254", "192.0.0.8", "192.0.0.170"],
            "reserved",
        );
        all_public(&["192.0.1.1"]);
    }

    #[test]
    fn ipv6_unspecified_and_loopback() {
        assert_eq!(reason("::"), Some("unspecified"));
        assert_eq!(reason("::1"), Some("loopback"));
    }

    #[test]
    fn ipv6_unique_local_incl_ec2_metadata() {
        all_internal(&["fd00:ec2::254", "fc00::1", "fdff:ffff::1"], "unique local");
    }

    #[test]
    fn ipv6_link_local() {
        all_internal(&["fe80::1", "febf:ffff::1"], "IPv6 link-local");
    }

    #[test]
    fn ipv6_site_local() {
        all_internal(&["fec0::1", "feff::1"], "IPv6 site-local");
    }

    #[test]
    fn ipv6_multicast() {
        all_internal(&["ff02::1", "ff0e::101"], "multicast");
    }

    #[test]
    fn ipv6_documentation() {
        all_internal(
            &["2001:db8::1", "2001:db8:ffff::1", "3fff::1", "3fff:fff::1"],
            "documentation",
        );
        all_public(&["2001:db9::1", "3ffe:ffff::1", "3fff:1000::1"]);
    }

    #[test]
    fn ipv6_benchmarking() {
        all_internal(&["2001:2::1", "2001:2:0:ffff::1"], "benchmarking");
    }

    #[test]
    fn ipv6_reserved() {
        all_internal(
            &[
                "100::1",      // discard-only
                "2001::1",     // Teredo
                "2001:1ff::1", // the end of 2001::/23
                "4000::1",     // outside global unicast 2000::/3
                "::ffff:0:1.2.3.4",
            ],
            "reserved",
        );
        all_internal(&["100:0:0:1::1"], "reserved");
        all_public(&["2001:200::1"]);
    }

    #[test]
    fn ipv4_mapped_is_judged_by_its_ipv4_address() {
        assert_eq!(reason("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::ffff:10.0.0.1"), Some("private (RFC 1918)"));
        all_internal(&["::ffff:169.254.169.254"], "link-local");
        all_internal(&["::ffff:0.0.0.0"], "unspecified");
        all_public(&["::ffff:8.8.8.8"]);
    }

    #[test]
    fn ipv4_compatible_is_judged_by_its_ipv4_address() {
        assert_eq!(reason("::127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::192.168.0.1"), Some("private (RFC 1918)"));
        // ::2 is ::0.0.0.2, in "this network".
        assert_eq!(reason("::2"), Some("unspecified"));
        all_public(&["::8.8.8.8"]);
    }

    #[test]
    fn nat64_is_judged_by_its_ipv4_address() {
        assert_eq!(reason("64:ff9b::127.0.0.1"), Some("loopback"));
        all_internal(&["64:ff9b::a9fe:a9fe"], "link-local");
        all_internal(&["64:ff9b::100.100.100.200"], "carrier-grade NAT");
        all_public(&["64:ff9b::8.8.8.8", "64:ff9b::1.1.1.1"]);
        all_internal(&["64:ff9b:1::a00:1"], "local-use NAT64");
    }

    #[test]
    fn six_to_four_is_judged_by_its_ipv4_address() {
        assert_eq!(reason("2002:7f00:1::1"), Some("loopback"));
        assert_eq!(reason("2002:c0a8:101::"), Some("private (RFC 1918)"));
        all_public(&["2002:808:808::1"]);
    }
}
