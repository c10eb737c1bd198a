//! The `glia` binary: parses the CLI, loads the configuration, sets up logging, and
//! runs a subcommand (`serve` by default, `migrate`, `import`, `user add`, the segmentation
//! engine's `model`, `train`, `eval`, `phantom`, and `sample-data`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use glia::config::Config;

#[derive(Parser, Debug)]
#[command(name = "glia", version, about = "Glia: a DICOM-native PACS node")]
struct Cli {
    /// Configuration file (optional; defaults apply when it does not exist).
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    /// Override a configuration key: --set section.key=value (repeatable; wins over env).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Import DICOM files and folders through the ingest path.
    Import {
        /// Files or folders (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Files in flight at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// User accounts (bootstrap the first admin).
    #[command(subcommand)]
    User(UserCommand),
    /// Segmentation model tools (run the raw network, segment a volume).
    #[command(subcommand)]
    Model(glia::ai::cli::ModelCommand),
    /// Train segmentation demo weights on synthetic phantoms.
    Train(glia::ai::cli::TrainArgs),
    /// Dice of segmentation weights on held-out synthetic phantoms.
    Eval(glia::ai::cli::EvalArgs),
    /// Write one synthetic multimodal brain phantom.
    Phantom(glia::ai::cli::PhantomArgs),
    /// Synthetic brain-MRI studies with tumours: write them as DICOM files and/or
    /// push them to a node with C-STORE (the node then segments them).
    SampleData(glia::ai::sample::SampleArgs),
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user, e.g. the first admin:
    /// `echo "$PASSWORD" | glia user add --role admin --username root --password-stdin`.
    Add {
        /// admin, radiologist, technician, referring_physician, patient, centre_manager.
        #[arg(long)]
        role: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        full_name: Option<String>,
        /// The user's centre (id).
        #[arg(long)]
        centre: Option<i64>,
        /// Read the password (first line) from standard input; required.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(cfg.log.level.clone()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The engine's tools are synchronous and need no node configuration.
    match cli.command {
        Some(Command::Model(cmd)) => return Ok(glia::ai::cli::run_model(cmd)?),
        Some(Command::Train(args)) => return Ok(glia::ai::cli::run_train(args)?),
        Some(Command::Eval(args)) => return Ok(glia::ai::cli::run_eval(args)?),
        Some(Command::Phantom(args)) => return Ok(glia::ai::cli::run_phantom(args)?),
        Some(Command::SampleData(args)) => {
            return tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(sample_data(args))
        }
        _ => {}
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn sample_data(args: glia::ai::sample::SampleArgs) -> anyhow::Result<()> {
    let push = args.push;
    let s = glia::ai::sample::run(args).await?;
    println!(
        "studies: {}  files written: {}  pushed: {}  failed: {}",
        s.studies, s.files, s.pushed, s.failed
    );
    for uid in &s.study_uids {
        println!("  study {uid}");
    }
    if let Some(addr) = push {
        println!(
            "the node segments each study once it is stable; follow it with\n  curl http://{}:8080/api/ai/jobs",
            addr.ip()
        );
    }
    if s.failed > 0 {
        std::process::exit(2);
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config, &cli.set).context("loading configuration")?;
    init_logging(&config);
    tracing::info!(config = %cli.config.display(), version = env!("CARGO_PKG_VERSION"), "configuration loaded");

    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let node = glia::app::start(config)
                .await
                .context("starting the node")?;
            let token = node.shutdown_token();
            tokio::spawn(async move {
                glia::app::shutdown_signal().await;
                token.cancel();
            });
            let state = node.state.clone();
            node.wait().await;
            state.close().await;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            let conn = glia::db::connect(&config.database.url, 1).await?;
            glia::db::migrate(&conn).await?;
            conn.close().await?;
            tracing::info!("migrations applied");
        }
        Command::Import { paths, parallel } => {
            let state = glia::app::open_state(config).await?;
            let summary = glia::import::run(&state.ingestor, &paths, parallel, true).await;
            state.close().await;
            println!(
                "stored: {}  duplicate: {}  rejected: {}",
                summary.stored,
                summary.duplicates,
                summary.rejected.len()
            );
            for (file, reason) in &summary.rejected {
                println!("  rejected {}: {}", file.display(), reason);
            }
            if !summary.rejected.is_empty() && summary.stored + summary.duplicates == 0 {
                std::process::exit(2);
            }
        }
        Command::User(UserCommand::Add {
            role,
            username,
            email,
            full_name,
            centre,
            password_stdin,
        }) => {
            anyhow::ensure!(
                password_stdin,
                "pass the password on standard input with --password-stdin"
            );
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let state = glia::app::open_state(config).await?;
            let user = glia::auth::service::add_user_cli(
                &state.auth,
                glia::auth::service::UserSpec {
                    username,
                    password,
                    email,
                    full_name,
                    role: glia::auth::Role::parse(&role).with_context(|| {
                        format!("unknown role {role:?} (admin, radiologist, technician, referring_physician, patient, centre_manager)")
                    })?,
                    centre_id: centre,
                    physician_name: None,
                    patient_ids: Vec::new(),
                },
            )
            .await;
            state.close().await;
            let user = user?;
            println!(
                "created user {} ({}) with id {}",
                user.username, user.role, user.id
            );
        }
        Command::Model(_)
        | Command::Train(_)
        | Command::Eval(_)
        | Command::Phantom(_)
        | Command::SampleData(_) => {
            unreachable!("handled before the runtime starts")
        }
    }
    Ok(())
}
