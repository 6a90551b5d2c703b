import ArgumentParser

struct KernelsBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kernels", abstract: "(not implemented yet)")

    func run() throws {
        throw ValidationError("qwen-bench kernels is not implemented yet")
    }
}
