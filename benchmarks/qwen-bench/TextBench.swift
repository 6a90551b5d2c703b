import ArgumentParser

struct TextBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "text", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench text is not implemented yet")
    }
}
