import ArgumentParser

struct VAEDecode: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae-decode", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-run vae-decode is not implemented yet")
    }
}
