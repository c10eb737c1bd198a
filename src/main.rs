mod ai;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "glia", version, about = "A DICOM-native PACS node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segmentation model tools.
    #[command(subcommand)]
    Model(ai::cli::ModelCommand),
    /// Train segmentation demo weights on synthetic phantoms.
    Train(ai::cli::TrainArgs),
    /// Dice of segmentation weights on held-out synthetic phantoms.
    Eval(ai::cli::EvalArgs),
    /// Write one synthetic multimodal brain phantom.
    Phantom(ai::cli::PhantomArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Model(cmd) => ai::cli::run_model(cmd)?,
        Command::Train(args) => ai::cli::run_train(args)?,
        Command::Eval(args) => ai::cli::run_eval(args)?,
        Command::Phantom(args) => ai::cli::run_phantom(args)?,
    }
    Ok(())
}
