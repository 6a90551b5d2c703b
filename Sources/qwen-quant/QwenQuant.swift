import ArgumentParser

@main
struct QwenQuant: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qwen-quant",
        abstract: "Convert a Hugging Face Qwen-Image checkpoint into a quantized pack, inspect and verify packs.",
        subcommands: []
    )
}
