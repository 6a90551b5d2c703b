import ArgumentParser

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "encode", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-run encode is not implemented yet")
    }
}
