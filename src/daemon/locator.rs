//! How a client finds the daemon that holds a store: while it runs, the daemon writes its
//! address and the store's id into the store's directory (`daemon.json`). A client reads it,
//! and then checks that the daemon answering there serves that very store.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name, in the store's directory.
pub const FILE: &str = "daemon.json";

/// Where the daemon serving a store answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Its API's base URL.
    pub url: String,
    /// The id of the store it serves.
    pub store_id: String,
    /// Its process id.
    pub pid: u32,
}

impl Location {
    /// The location of this process serving `store_id` on `addr` (an unspecified address is
    /// reached on loopback).
    pub fn of(addr: SocketAddr, store_id: &str) -> Location {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        Location {
            url: format!("http://{}", SocketAddr::new(ip, addr.port())),
            store_id: store_id.to_string(),
            pid: std::process::id(),
        }
    }
}

fn path(data: &Path) -> PathBuf {
    data.join(FILE)
}

/// Writes the location into the store's directory (whole or not at all).
pub fn write(data: &Path, location: &Location) -> io::Result<()> {
    let tmp = data.join(format!(".{FILE}.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(location).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(data))
}

/// The location written in a store's directory, if any can be read.
pub fn read(data: &Path) -> Option<Location> {
    let text = std::fs::read(path(data)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes the location, if it is still this one (a daemon started since keeps its own).
pub fn remove(data: &Path, location: &Location) {
    if read(data).as_ref() == Some(location) {
        let _ = std::fs::remove_file(path(data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_read_back_and_removed_only_by_its_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()), None);
        let mine = Location::of("0.0.0.0:9470".parse().expect("addr"), "S1");
        assert_eq!(mine.url, "http://127.0.0.1:9470");
        write(dir.path(), &mine).expect("writes");
        assert_eq!(read(dir.path()), Some(mine.clone()));
        let other = Location {
            pid: mine.pid + 1,
            ..mine.clone()
        };
        remove(dir.path(), &other);
        assert_eq!(read(dir.path()), Some(mine.clone()));
        remove(dir.path(), &mine);
        assert_eq!(read(dir.path()), None);
    }
}
