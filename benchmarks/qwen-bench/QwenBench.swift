import ArgumentParser

// The benchmark command. Each subcommand lives in its own file; `report` regenerates
// benchmarks/RESULTS.md, the CSV and the plot from the recorded runs.
@main
struct QwenBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qwen-bench",
        abstract: "Measure this machine's limits, the kernels, and every component's accuracy, speed and peak RSS.",
        subcommands: [Limits.self, KernelsBench.self, OpsBench.self, Synth.self, ConvertBench.self,
                      TextBench.self, ColdBench.self, DatasetBench.self, ServeBench.self, VisionBench.self, VAEBench.self, Accuracy.self, WeightSNR.self, Report.self]
    )
}
