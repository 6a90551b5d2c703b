import ArgumentParser

struct Vision: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vision", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-run vision is not implemented yet")
    }
}
