//! `tcpy-bench`: load a tcpy host on this machine and report req/s and latency.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tcpy_bench::cli::Args;

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let plan = args.plan().await?;
        tcpy_bench::run(&plan).await.context("benchmark failed")
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot write the report")?
        );
    } else {
        println!("{report}");
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
