import ArgumentParser

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "synth", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench synth is not implemented yet")
    }
}
