import ArgumentParser

struct Accuracy: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "accuracy", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench accuracy is not implemented yet")
    }
}
