import ArgumentParser

struct OpsBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ops", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench ops is not implemented yet")
    }
}
