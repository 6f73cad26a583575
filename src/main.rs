use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(lifeboat::cli::run(std::env::args_os()))
}
