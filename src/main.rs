fn main() -> std::process::ExitCode {
    unet_lab::cli::main()
}
