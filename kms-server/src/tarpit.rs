//! Failed authentication costs the client that fails, not everyone else: the first [`FREE`]
//! failures from one client address within [`WINDOW`] are answered at once; each further one is
//! answered only after a delay that doubles from [`FIRST_DELAY`] up to
//! [`Limits::auth_failure_delay`](crate::Limits::auth_failure_delay). The waiting costs the server
//! a timer, not a CPU, so a client that floods forged requests and waits for each answer (as HTTP
//! clients do) gets a handful of answers a second, and the CPUs stay with the callers whose
//! requests authenticate. Those are never delayed, whichever address they come from.
//!
//! Clients are told apart by IP address (an IPv6 address by its /64, which one host usually
//! holds whole). At most [`MAX_CLIENTS`] addresses are tracked; when that many have failed
//! within the window, a failure from an address not among them waits the longest delay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address answered at once within [`WINDOW`] (a mistyped secret, a clock that
/// drifted, a few expired session tokens before the credentials refresh).
pub(crate) const FREE: u32 = 10;
/// An address's failures are forgotten this long after its last one.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// The delay of the first failure past [`FREE`]; each further one doubles it.
pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(25);
/// Most addresses tracked at once.
const MAX_CLIENTS: usize = 65_536;

/// Recent authentication failures per client address.
#[derive(Debug)]
pub(crate) struct AuthFailures {
    longest: Duration,
    clients: Mutex<Clients>,
}

#[derive(Debug, Default)]
struct Clients {
    by_address: HashMap<IpAddr, Recent>,
    /// When the full table was last swept of addresses whose window has passed (at most once a
    /// second, so a flood of new addresses cannot make every failure a sweep).
    swept: Option<Instant>,
}

#[derive(Debug)]
struct Recent {
    failures: u32,
    /// When this address's current window began: its failures count from here for [`WINDOW`].
    since: Instant,
}

impl AuthFailures {
    /// Delays up to `longest`; `Duration::ZERO` turns delaying off.
    pub(crate) fn new(longest: Duration) -> Self {
        Self {
            longest,
            clients: Mutex::new(Clients::default()),
        }
    }

    /// Records a failure from `peer` and returns how long to wait before answering it.
    pub(crate) fn failed(&self, peer: Option<IpAddr>) -> Duration {
        let Some(peer) = peer.filter(|_| !self.longest.is_zero()) else {
            return Duration::ZERO;
        };
        let client = client_of(peer);
        let now = Instant::now();
        let Ok(mut clients) = self.clients.lock() else {
            return self.longest;
        };
        let clients = &mut *clients;
        if clients.by_address.len() >= MAX_CLIENTS && !clients.by_address.contains_key(&client) {
            let may_sweep = clients
                .swept
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if may_sweep {
                clients.swept = Some(now);
                clients
                    .by_address
                    .retain(|_, r| now.duration_since(r.since) < WINDOW);
            }
            if clients.by_address.len() >= MAX_CLIENTS {
                return self.longest;
            }
        }
        let recent = clients.by_address.entry(client).or_insert(Recent {
            failures: 0,
            since: now,
        });
        // A fixed window: a client failing now and then (an expired key in a cron job) starts a
        // new count each minute, whatever the gaps between its failures.
        if now.duration_since(recent.since) >= WINDOW {
            recent.failures = 0;
            recent.since = now;
        }
        recent.failures = recent.failures.saturating_add(1);
        delay_after(recent.failures, self.longest)
    }
}

/// The delay of an address's `n`th failure within the window.
fn delay_after(n: u32, longest: Duration) -> Duration {
    if n <= FREE {
        return Duration::ZERO;
    }
    let doublings = (n - FREE - 1).min(20);
    FIRST_DELAY.saturating_mul(1 << doublings).min(longest)
}

/// The address a client is known by: IPv4 as it is (also when mapped into IPv6), IPv6 by its /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_failures_are_free_then_each_waits_twice_as_long_up_to_the_longest() {
        let t = AuthFailures::new(SECOND);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let delays: Vec<Duration> = (0..20).map(|_| t.failed(Some(ip))).collect();
        assert!(delays[..FREE as usize].iter().all(Duration::is_zero));
        let ms: Vec<u128> = delays[FREE as usize..]
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(ms, [25, 50, 100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        // Another address has its own count.
        assert!(t.failed(Some("192.0.2.8".parse().unwrap())).is_zero());
    }

    #[test]
    fn off_without_a_delay_and_without_an_address() {
        let off = AuthFailures::new(Duration::ZERO);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!((0..50).all(|_| off.failed(Some(ip)).is_zero()));
        let on = AuthFailures::new(SECOND);
        assert!((0..50).all(|_| on.failed(None).is_zero()));
    }

    #[test]
    fn ipv6_clients_are_their_64_and_mapped_ipv4_is_ipv4() {
        let t = AuthFailures::new(SECOND);
        for i in 0..FREE {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            assert!(t.failed(Some(ip)).is_zero());
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(t.failed(Some(same_64)), FIRST_DELAY);
        assert!(t.failed(Some("2001:db8:1:3::1".parse().unwrap())).is_zero());
        assert_eq!(
            client_of("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn failures_are_forgotten_a_window_after_the_last() {
        let t = AuthFailures::new(SECOND);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let long_ago = Instant::now().checked_sub(WINDOW).unwrap();
        t.clients.lock().unwrap().by_address.insert(
            ip,
            Recent {
                failures: 100,
                since: long_ago,
            },
        );
        assert!(t.failed(Some(ip)).is_zero());
        // Failures spread out: a window that began a minute ago is over, however recent the last.
        let a_while_ago = Instant::now().checked_sub(WINDOW / 2).unwrap();
        t.clients.lock().unwrap().by_address.insert(
            ip,
            Recent {
                failures: 100,
                since: long_ago.min(a_while_ago),
            },
        );
        assert!(t.failed(Some(ip)).is_zero());
    }

    #[test]
    fn a_full_table_makes_new_addresses_wait_the_longest() {
        let t = AuthFailures::new(SECOND);
        {
            let mut clients = t.clients.lock().unwrap();
            let now = Instant::now();
            for i in 0..MAX_CLIENTS as u32 {
                clients.by_address.insert(
                    IpAddr::V4(std::net::Ipv4Addr::from(i)),
                    Recent {
                        failures: 1,
                        since: now,
                    },
                );
            }
        }
        assert_eq!(t.failed(Some("203.0.113.9".parse().unwrap())), SECOND);
        // One already tracked keeps its own count.
        assert!(t.failed(Some(IpAddr::V4(0.into()))).is_zero());
    }
}
