/// mimalloc rather than the system allocator: `analyze` reads its input on
/// one thread and frees the events on another, where glibc's per-thread
/// caches never refill and every allocation takes the slow path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flowaudit::cli::main()
}
