//! The `compress` binary: a thin clap layer over compress-core. Exit code 0 on success,
//! 1 on user error with a one-line cause on stderr.

mod cli;
mod commands;
mod flags;

use clap::Parser;

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("compress: internal error: {msg}{loc} (please report this)");
    }));
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            // One line: clap's first line (e.g. "error: unexpected argument '--x' found").
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error");
            eprintln!("{first} (see --help)");
            std::process::exit(1);
        }
    };
    match std::panic::catch_unwind(|| commands::run(cli)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            // One line: the context chain, skipping causes a message already quotes.
            let mut line = String::new();
            for cause in e.chain().map(flags::message) {
                if !line.contains(&cause) {
                    if !line.is_empty() {
                        line.push_str(": ");
                    }
                    line.push_str(&cause);
                }
            }
            eprintln!("error: {}", line.replace('\n', " "));
            std::process::exit(1);
        }
        Err(_) => std::process::exit(2),
    }
}
