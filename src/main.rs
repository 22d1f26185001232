//! The `sluice` binary: parse flags, set up logging, bind, serve until SIGINT or
//! SIGTERM.

use clap::Parser;
use std::sync::Arc;
use std::time::Duration;

use sluice::broker::{Broker, follow_image, track_leaders};
use sluice::cluster::Cluster;
use sluice::config::{Cli, Command, Config};
use sluice::handlers;

#[global_allocator]
static ALLOC: sluice::alloc::BrokerAlloc = sluice::alloc::BrokerAlloc;

fn main() -> std::process::ExitCode {
    // A bad flag (--log-format xml included) is refused here by clap, with
    // exit code 2, before anything is logged.
    let cli = Cli::parse();
    // Logging starts before the configuration is checked, so that what the
    // check reports comes in the chosen format (see sluice::logging).
    sluice::logging::init(Config::early_log_format(&cli));
    if let Some(Command::Admin(cmd)) = &cli.command {
        return sluice::cli::main(cmd);
    }
    if let Some(Command::Completion { shell }) = &cli.command {
        use clap::CommandFactory;
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut Cli::command(), "sluice", &mut script);
        // A closed pipe (`| head`) is no failure of ours.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        return std::process::ExitCode::SUCCESS;
    }
    if let Some(Command::Bench(args)) = &cli.command {
        return bench(args);
    }
    if let Some(Command::Scram(cmd)) = &cli.command {
        return scram(&cli, cmd);
    }
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(args: &sluice::bench::BenchArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sluice::bench::run(args)) {
        Ok(report) => {
            if let Some(path) = &args.chart {
                if let Err(e) = std::fs::write(path, sluice::bench::chart::svg(args, &report)) {
                    eprintln!("cannot write the chart to {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
                eprintln!("chart written to {}", path.display());
            }
            if args.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                print!("{}", sluice::bench::table(args, &report));
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `sluice scram add`: into --data-dir, else the data.dir of the
/// configuration (--config, flags).
fn scram(cli: &Cli, cmd: &sluice::security::sasl::offline::ScramCommand) -> std::process::ExitCode {
    use sluice::security::sasl::offline::{ScramCommand, add};
    let ScramCommand::Add(a) = cmd;
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let dir = a.data_dir.clone().unwrap_or(config.data_dir.clone());
    match add(
        &dir,
        config.cluster_id.as_deref(),
        &a.user,
        &a.password,
        &a.mechanism,
        a.iterations,
    ) {
        Ok(()) => {
            eprintln!(
                "{} credential for user '{}' stored in {}",
                a.mechanism,
                a.user,
                dir.display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scram add failed: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    tracing::info!(data_dir = %config.data_dir.display(), "starting sluice");
    sluice::limits::apply();
    let listeners = sluice::server::Listener::bind_all(&config).await?;
    // The admin listener answers (503) while the logs are opened.
    let admin = Arc::new(sluice::metrics::http::AdminState::default());
    if let Some(addr) = config.admin_address()? {
        let socket = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot bind the admin listener (admin.listen) on {addr}: {e}"))?;
        tracing::info!(address = %socket.local_addr()?, "admin listener: /metrics, /health, /ready");
        tokio::spawn(sluice::metrics::http::run(socket, admin.clone()));
    }
    let voters = config.voters()?;
    let clock: Arc<dyn sluice_storage::Clock> = Arc::new(sluice_storage::SystemClock);
    let cluster = if voters.is_empty() {
        None
    } else {
        Some(
            Cluster::start(&config, voters, clock.clone())
                .await
                .map_err(|e| format!("cannot join the cluster: {e}"))?,
        )
    };
    let broker = Broker::open_with(config, handlers::version_table(), clock, cluster.clone())
        .map_err(|e| format!("cannot open the data folder: {e}"))?;
    if let Some(c) = cluster {
        let endpoints = broker
            .config
            .listener_specs()?
            .iter()
            .map(|l| l.endpoint())
            .collect();
        // Registering first: a broker that is not a voter receives the
        // metadata log only once the active controller has its record.
        tokio::spawn(
            c.clone()
                .register(endpoints, broker.config.broker_rack.clone()),
        );
        if !c.wait_caught_up(Duration::from_secs(10)).await {
            tracing::warn!("no controller quorum after 10 s; serving clients meanwhile");
        }
        let (b, image) = (broker.clone(), c.image());
        tokio::task::spawn_blocking(move || b.reconcile(&image)).await?;
        tokio::spawn(follow_image(Arc::downgrade(&broker), c.clone()));
        tokio::spawn(track_leaders(Arc::downgrade(&broker), c.clone()));
        tokio::spawn(broker.clone().bootstrap_scram_credentials());
    }
    admin.serving(broker.clone());
    sluice::server::run_listeners(listeners, broker, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
