import ArgumentParser

struct VisionBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vision", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench vision is not implemented yet")
    }
}
