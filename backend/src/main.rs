use std::process::ExitCode;

use clap::Parser;
use keyroll::cli::{AuditCommand, Cli, Command, TenantCommand, UserCommand};
use keyroll::config::Settings;
use keyroll::domain::input::{Email, Name};
use keyroll::startup::Application;
use keyroll::{store, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keyroll: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Healthcheck { path }) = &cli.command {
        return match keyroll::cli::probe(settings.listen, path, std::time::Duration::from_secs(2)) {
            Ok(200) => ExitCode::SUCCESS,
            Ok(code) => {
                eprintln!("keyroll: {path} answered {code}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("keyroll: {path}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    telemetry::init(settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::User { command: UserCommand::Password { email } } => set_password(&settings, &email).await,
        Command::Tenant { command: TenantCommand::Create { name, owner_email, json } } => {
            create_tenant(&settings, &name, &owner_email, json).await
        }
        Command::Tenant { command: TenantCommand::InviteLink { days } } => invite_link(&settings, days).await,
        Command::Healthcheck { .. } => Ok(()),
        Command::Audit { command: AuditCommand::Verify { tenant, json } } => {
            match verify_audit(&settings, tenant.as_deref(), json).await {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyroll: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let host = settings.listen.ip();
    let app = Application::build(settings).await?;
    let url = format!("http://{host}:{}", app.port());
    let has_tenant = store::tenants::any(&app.state().db).await.unwrap_or(true);
    println!("Keyroll is listening on {url} (open it in a browser; API contract at {url}/openapi.json)");
    if !has_tenant {
        println!("First run: open {url}/setup to create your team and owner account.");
        println!("  (or from a terminal: keyroll tenant create --name \"Acme\" --owner-email ops@acme.test)");
    }
    app.drain_on_signals();
    app.run_until_stopped().await?;
    println!("Keyroll stopped.");
    Ok(())
}

/// Checks the chains; `Ok(false)` when one is broken.
async fn verify_audit(settings: &Settings, only: Option<&str>, json: bool) -> anyhow::Result<bool> {
    let db = store::connect(&settings.database_url, 2).await?;
    store::migrate(&db).await?;
    let (intact, lines) = keyroll::audit::check_all(&db, only, json).await?;
    for line in lines {
        println!("{line}");
    }
    Ok(intact)
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = store::connect(&settings.database_url, 2).await?;
    store::migrate(&db).await?;
    println!("migrations applied");
    Ok(())
}

async fn set_password(settings: &Settings, email: &str) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    if !(10..=128).contains(&password.chars().count()) {
        anyhow::bail!("the password (standard input) must have 10 to 128 characters");
    }
    let db = store::connect(&settings.database_url, 2).await?;
    store::migrate(&db).await?;
    let user = store::accounts::user_by_email(&db, email.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user has the email {}", email.as_str()))?;
    let hashed =
        keyroll::crypto::password::hash(password).ok_or_else(|| anyhow::anyhow!("cannot hash the password"))?;
    let state = keyroll::state::AppState::standalone(settings.clone(), db);
    keyroll::app::accounts::set_password_cli(&state, &user.id, &hashed).await?;
    println!("Password set for {}. Sign in at /login.", email.as_str());
    Ok(())
}

async fn invite_link(settings: &Settings, days: i64) -> anyhow::Result<()> {
    if !(1..=30).contains(&days) {
        anyhow::bail!("--days must be from 1 to 30");
    }
    let db = store::connect(&settings.database_url, 2).await?;
    store::migrate(&db).await?;
    let (token, digest) = keyroll::crypto::new_token();
    let expires = chrono::Utc::now() + chrono::TimeDelta::days(days);
    store::signup_links::add(&db, &digest, expires).await?;
    let base = settings.public_url.clone().unwrap_or_else(|| format!("http://{}", settings.listen));
    println!("{}/signup?invite={token}", base.trim_end_matches('/'));
    if settings.signup != keyroll::config::SignupPolicy::Invite {
        eprintln!("note: sign-up links work only while KEYROLL_SIGNUP=invite (it is {})", settings.signup.as_str());
    }
    Ok(())
}

async fn create_tenant(settings: &Settings, name: &str, email: &str, json: bool) -> anyhow::Result<()> {
    let name = Name::parse(name).map_err(|m| anyhow::anyhow!("--name {m}"))?;
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--owner-email {m}"))?;
    let db = store::connect(&settings.database_url, 2).await?;
    store::migrate(&db).await?;
    let state = keyroll::state::AppState::standalone(settings.clone(), db);
    let created =
        keyroll::app::tenants::create(&state, &name.into_string(), email.as_str(), keyroll::app::tenants::Via::Cli)
            .await?;
    if json {
        println!("{}", serde_json::json!({"tenant_id": created.tenant.id, "root_key": created.root_key.expose()}));
    } else {
        println!("Tenant created: {} ({})", created.tenant.name, created.tenant.id);
        println!("Root key (shown once, store it now):");
        println!("  {}", created.root_key.expose());
        println!("Use it as: Authorization: Bearer <root key>");
    }
    Ok(())
}
