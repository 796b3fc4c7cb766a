//! Hosts (from `--hosts` or a hostfile), and the environment each rank gets.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::{IpAddr, TcpListener};
use std::path::Path;

/// One machine to run processes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// What to `ssh` into (`127.0.0.1` or `localhost`: run locally, no ssh).
    pub ssh: String,
    /// The IP addresses the ring backend listens on (one connection each, or more).
    pub ips: Vec<String>,
}

impl Host {
    /// Whether the processes of this host run on this machine, without ssh.
    pub fn is_local(&self) -> bool {
        matches!(self.ssh.as_str(), "127.0.0.1" | "localhost" | "::1")
    }
}

/// What a hostfile holds: Python's `mlx.launch` format.
#[derive(Debug, Default)]
pub struct Hostfile {
    /// The hosts, in rank order.
    pub hosts: Vec<Host>,
    /// The backend it asks for, if any.
    pub backend: Option<String>,
    /// `KEY=VALUE` pairs to set on every process.
    pub envs: Vec<String>,
}

/// Parses a hostfile: a JSON list of `{"ssh": …, "ips": [...]}`, or an object with
/// `"hosts"` (that list) and optional `"backend"` and `"envs"`.
pub fn read_hostfile(path: &Path) -> Result<Hostfile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the hostfile {}", path.display()))?;
    parse_hostfile(&text).with_context(|| format!("bad hostfile {}", path.display()))
}

/// Parses the text of a hostfile (see [`read_hostfile`]).
pub fn parse_hostfile(text: &str) -> Result<Hostfile> {
    let data: Value = serde_json::from_str(text).context("not JSON")?;
    let mut out = Hostfile::default();
    let hosts = match &data {
        Value::Array(hosts) => hosts,
        Value::Object(map) => {
            if let Some(b) = map.get("backend") {
                let b = b.as_str().context("\"backend\" is not a string")?;
                if !b.is_empty() {
                    out.backend = Some(b.to_string());
                }
            }
            if let Some(envs) = map.get("envs") {
                let envs = envs.as_array().context("\"envs\" is not a list")?;
                for e in envs {
                    let e = e.as_str().context("an entry of \"envs\" is not a string")?;
                    out.envs.push(e.to_string());
                }
            }
            map.get("hosts")
                .and_then(Value::as_array)
                .context("the object has no \"hosts\" list")?
        }
        _ => bail!("expected a list of hosts or an object with \"hosts\""),
    };
    for (i, h) in hosts.iter().enumerate() {
        let ssh = h
            .get("ssh")
            .and_then(Value::as_str)
            .with_context(|| format!("host {i} has no \"ssh\" name"))?;
        if ssh.is_empty() {
            bail!("host {i} has an empty \"ssh\" name");
        }
        let ips = match h.get("ips") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .with_context(|| format!("\"ips\" of host {i} is not a list"))?
                .iter()
                .map(|ip| {
                    let ip = ip
                        .as_str()
                        .with_context(|| format!("an IP of host {i} is not a string"))?;
                    ip.parse::<IpAddr>()
                        .with_context(|| format!("{ip:?} (host {i}) is not an IP address"))?;
                    Ok(ip.to_string())
                })
                .collect::<Result<_>>()?,
        };
        out.hosts.push(Host {
            ssh: ssh.to_string(),
            ips,
        });
    }
    if out.hosts.is_empty() {
        bail!("it lists no hosts");
    }
    Ok(out)
}

/// Hosts from a comma-separated list; a name that is an IP address is also its ring IP.
pub fn hosts_from_list(list: &str) -> Result<Vec<Host>> {
    list.split(',')
        .map(|h| {
            let h = h.trim();
            if h.is_empty() {
                bail!("--hosts has an empty host name in {list:?}");
            }
            let ips = match h.parse::<IpAddr>() {
                Ok(_) => vec![h.to_string()],
                Err(_) if h == "localhost" => vec!["127.0.0.1".to_string()],
                Err(_) => Vec::new(),
            };
            Ok(Host {
                ssh: h.to_string(),
                ips,
            })
        })
        .collect()
}

/// The ring backend's addresses: for each rank, `connections` `"ip:port"` entries per IP
/// of its host, ports counting up from `starting_port` (0: free ports the OS picks, for
/// local ranks only).
pub fn ring_addresses(
    ranks: &[Host],
    starting_port: u16,
    connections: u32,
) -> Result<Vec<Vec<String>>> {
    if let Some(h) = ranks.iter().find(|h| h.ips.is_empty()) {
        bail!(
            "the ring backend needs IP addresses, but host {:?} has none (give IPs in \
             --hosts, or \"ips\" in a hostfile)",
            h.ssh
        );
    }
    let count: usize = ranks
        .iter()
        .map(|h| h.ips.len() * connections as usize)
        .sum();
    let ports: Vec<u16> = if starting_port == 0 {
        if let Some(h) = ranks.iter().find(|h| !h.is_local()) {
            bail!(
                "--starting-port 0 (free local ports) works only when every host is local, \
                 but {:?} is not",
                h.ssh
            );
        }
        free_ports(count)?
    } else {
        let last = starting_port as usize + count - 1;
        if last > u16::MAX as usize {
            bail!("ports {starting_port}..={last} run past 65535: lower --starting-port");
        }
        (0..count).map(|i| starting_port + i as u16).collect()
    };
    let mut ports = ports.into_iter();
    Ok(ranks
        .iter()
        .map(|h| {
            h.ips
                .iter()
                .flat_map(|ip| std::iter::repeat_n(ip, connections as usize))
                .zip(ports.by_ref())
                .map(|(ip, port)| match ip.parse::<IpAddr>() {
                    Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
                    _ => format!("{ip}:{port}"),
                })
                .collect()
        })
        .collect())
}

/// `n` distinct free TCP ports on 127.0.0.1 (held open until all are picked).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("cannot find a free local port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Splits and checks a `KEY=VALUE` setting (`KEY` of letters, digits and `_`).
pub fn parse_env(setting: &str) -> Result<(String, String)> {
    let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
    let valid = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        bail!("{setting:?} is not a KEY=VALUE environment setting");
    }
    Ok((key.to_string(), value.to_string()))
}
