import ArgumentParser

struct VAEBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench vae is not implemented yet")
    }
}
