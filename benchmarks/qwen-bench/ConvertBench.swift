import ArgumentParser

struct ConvertBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "convert", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench convert is not implemented yet")
    }
}
