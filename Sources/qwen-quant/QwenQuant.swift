import ArgumentParser

@main
struct QwenQuant: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qwen-quant",
        abstract: "Convert a Hugging Face Qwen-Image checkpoint into a quantized pack, inspect and verify packs.",
        discussion: """
        Examples:
          qwen-quant convert Qwen-Image -o qwen-image-q8.pack --scheme q8 --group-size 64
          qwen-quant convert Qwen-Image/vae -o vae.pack --scheme bf16
          qwen-quant convert Qwen-Image -o te-q4.pack --scheme q4 --rule 'mlp\\.down_proj=q8' --zstd 3
          qwen-quant convert Qwen-Image -o x.pack --dry-run
          qwen-quant calibrate bf16.pack -o importance.safetensors
          qwen-quant convert Qwen-Image -o q4c.pack --scheme q4c --importance importance.safetensors
          qwen-quant inspect qwen-image-q8.pack
          qwen-quant verify qwen-image-q8.pack --source Qwen-Image --json
        """,
        subcommands: [Convert.self, Calibrate.self, Inspect.self, Verify.self]
    )
}
