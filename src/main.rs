fn main() -> std::process::ExitCode {
    flowaudit::cli::main()
}
