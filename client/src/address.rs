//! The hosts a client connects to, and the round it makes of them when it fails over.

use std::fmt;

use crate::ClientError;

/// One host a client may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// A DNS name or an IP address, without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Address {
    /// Reads `host:port`, with an IPv6 literal in brackets (`[::1]:7272`).
    fn parse(text: &str) -> Result<Self, ClientError> {
        let invalid = |reason: &'static str| ClientError::InvalidAddress {
            addr: text.to_owned(),
            reason,
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(|| invalid("no `:port`"))?;
        let port = port
            .parse()
            .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
        let host = match host.strip_prefix('[') {
            Some(bracketed) => bracketed
                .strip_suffix(']')
                .filter(|literal| literal.contains(':'))
                .ok_or_else(|| invalid("brackets hold an IPv6 address: `[::1]:7272`"))?,
            None if host.contains(':') => {
                return Err(invalid("an IPv6 address goes in brackets: `[::1]:7272`"));
            }
            None => host,
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Address {
    /// `host:port`, with an IPv6 literal in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A client's addresses, and the one it uses now.
#[derive(Debug, Clone)]
pub(crate) struct Addresses {
    list: Vec<Address>,
    current: usize,
}

impl Addresses {
    /// Just `host:port`.
    pub(crate) fn one(host: String, port: u16) -> Self {
        Self {
            list: vec![Address { host, port }],
            current: 0,
        }
    }

    /// Every `host:port` of `list`, starting at a random one so that clients given the
    /// same list spread over its hosts.
    pub(crate) fn parse<I>(list: I) -> Result<Self, ClientError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let list = list
            .into_iter()
            .map(|text| Address::parse(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(ClientError::NoAddresses);
        }
        let current = fastrand::usize(..list.len());
        Ok(Self { list, current })
    }

    /// The address the client connects to next.
    pub(crate) fn current(&self) -> &Address {
        &self.list[self.current]
    }

    /// Moves on to the next address, round the list.
    pub(crate) fn advance(&mut self) {
        self.current = (self.current + 1) % self.list.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<String, String> {
        Address::parse(text)
            .map(|addr| format!("{}|{}|{addr}", addr.host, addr.port))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn addresses_are_host_colon_port_with_ipv6_in_brackets() {
        assert_eq!(
            parse("a.example:7272"),
            Ok("a.example|7272|a.example:7272".into())
        );
        assert_eq!(parse("10.0.0.7:1"), Ok("10.0.0.7|1|10.0.0.7:1".into()));
        assert_eq!(parse("[::1]:7272"), Ok("::1|7272|[::1]:7272".into()));
        for bad in [
            "a.example",
            ":7272",
            "a:port",
            "a:70000",
            "::1:7272",
            "[::1]",
            "[a]:1",
            "[::1:7",
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(
                error.starts_with(&format!("invalid address `{bad}`: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn an_empty_list_is_refused() {
        let error = Addresses::parse(Vec::<String>::new()).expect_err("no address");
        assert!(matches!(error, ClientError::NoAddresses));
    }

    #[test]
    fn the_round_goes_through_every_address_and_back() {
        let mut addresses = Addresses::parse(["a:1", "b:2", "c:3"]).expect("valid");
        let start = addresses.current().clone();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(addresses.current().to_string());
            addresses.advance();
        }
        seen.sort();
        assert_eq!(seen, ["a:1", "b:2", "c:3"]);
        assert_eq!(addresses.current(), &start);
    }

    #[test]
    fn clients_start_at_every_position() {
        let list = ["a:1", "b:2", "c:3", "d:4"];
        let mut starts = [0_usize; 4];
        for _ in 0..400 {
            let addresses = Addresses::parse(list).expect("valid");
            starts[addresses.current] += 1;
        }
        // Each position is expected 100 times; below 40 would be a broken shuffle
        // (the chance of it by luck is far below one in a billion).
        assert!(starts.iter().all(|&n| n >= 40), "starts: {starts:?}");
    }
}
