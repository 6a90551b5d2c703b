import ArgumentParser

@main
struct QwenRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qwen-run",
        abstract: "Run the Qwen-Image support components (text encoder, vision tower, VAE) from a pack.",
        discussion: """
        Examples:
          qwen-run encode --pack pack/ --prompt "a red fox in the snow" --out embeds.safetensors
          qwen-run encode --pack pack/ --prompt "make it blue" --image in.png --mode edit --out e.safetensors
          qwen-run vae-encode --pack pack/ --image in.png --out latents.safetensors --normalize
          qwen-run vae-decode --pack pack/ --latents latents.safetensors --out out.png --denormalize
        """,
        subcommands: [Tokenize.self, Encode.self, Vision.self, VAEEncode.self, VAEDecode.self, Serve.self]
    )
}
