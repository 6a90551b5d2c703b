import ArgumentParser

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench report is not implemented yet")
    }
}
