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
