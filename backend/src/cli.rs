//! The command line: `serve` (default), `migrate`, `tenant create`, `user password`, `audit verify`.

use clap::{Parser, Subcommand};

/// Keyroll: API keys with zero-downtime rotation.
#[derive(Debug, Parser)]
#[command(name = "keyroll", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, the verify endpoint and the pages (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage dashboard users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Ask the node listening on `KEYROLL_LISTEN` (on this machine) whether it is alive: exits 0
    /// when `GET /healthz` answers 200 within two seconds, 1 otherwise. For container health
    /// checks, where the image has no shell or HTTP client.
    Healthcheck {
        /// The path to ask (`/readyz` to ask whether the node takes traffic).
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
}

/// Sends `GET {path}` to the node at `listen` (an unspecified address means this machine) and
/// returns the answer's status code.
///
/// # Errors
/// No connection, no answer within `timeout`, or an answer that is not HTTP.
pub fn probe(listen: std::net::SocketAddr, path: &str, timeout: std::time::Duration) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let ip = if listen.ip().is_unspecified() {
        if listen.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() }
    } else {
        listen.ip()
    };
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path must start with / and have no spaces",
        ));
    }
    let mut conn = std::net::TcpStream::connect_timeout(&std::net::SocketAddr::new(ip, listen.port()), timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut head = [0_u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = conn.read(&mut head[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let line = std::str::from_utf8(&head[..read]).unwrap_or_default();
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of every tenant's audit log (or one tenant's) and point at the first
    /// broken link. Exits with status 1 when a chain is broken.
    Verify {
        /// Only this tenant (`ten_…`).
        #[arg(long)]
        tenant: Option<String>,
        /// Print one JSON report per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Set a user's dashboard password, read from standard input (for installs without email;
    /// every session of the user ends).
    Password {
        /// The user's email address.
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id and first root key (shown once).
    Create {
        /// The tenant's display name.
        #[arg(long)]
        name: String,
        /// The owner's email address.
        #[arg(long)]
        owner_email: String,
        /// Print `{"tenant_id":…,"root_key":…}` only.
        #[arg(long)]
        json: bool,
    },
    /// Print a single-use link that creates one team at `/signup` (for `KEYROLL_SIGNUP=invite`).
    InviteLink {
        /// Days the link stays valid (1 to 30).
        #[arg(long, default_value_t = 7)]
        days: i64,
    },
}
