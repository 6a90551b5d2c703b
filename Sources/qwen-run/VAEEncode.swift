import ArgumentParser

struct VAEEncode: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae-encode", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-run vae-encode is not implemented yet")
    }
}
