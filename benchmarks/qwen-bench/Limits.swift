import ArgumentParser

struct Limits: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "limits", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench limits is not implemented yet")
    }
}
