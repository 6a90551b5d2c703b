import ArgumentParser
import Foundation
import Quant
import QwenImage

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text (no template, no special tokens added).",
        discussion: HelpText.reflow("""
        Added tokens written in the text (<|im_start|>, <|image_pad|>, ...) become their ids.
        Prints the ids as a JSON array on stdout; with --json, an object with ids, tokens and timing.

        Examples:
          qwen-run tokenize --pack pack/ --text "A red fox in the snow"
          qwen-run tokenize --tokenizer Qwen-Image/tokenizer --text "<|im_start|>user" --json
        """))

    @Option(name: .long, help: "A pack folder (uses its tokenizer component).")
    var pack: String?

    @Option(name: .long, help: "A tokenizer folder (tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json).")
    var tokenizer: String?

    @Option(name: .long, help: "The text to tokenize.")
    var text: String

    @Flag(name: .long, help: "Print a JSON object with ids, tokens, count and timing instead of the bare id array.")
    var json = false

    func validate() throws {
        if (pack == nil) == (tokenizer == nil) {
            throw ValidationError("give exactly one of --pack PACK or --tokenizer DIR")
        }
    }

    func run() throws {
        do {
            let start = DispatchTime.now()
            let tok = try loadTokenizer()
            let loaded = DispatchTime.now()
            let ids = tok.encode(text)
            let done = DispatchTime.now()
            if json {
                let object: [String: Any] = [
                    "ids": ids,
                    "tokens": ids.map { tok.token(for: $0) ?? "" },
                    "count": ids.count,
                    "load_seconds": Double(loaded.uptimeNanoseconds - start.uptimeNanoseconds) / 1e9,
                    "encode_seconds": Double(done.uptimeNanoseconds - loaded.uptimeNanoseconds) / 1e9,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("[" + ids.map(String.init).joined(separator: ", ") + "]")
            }
        } catch let error as QwenImageError {
            note("error: \(error.description)")
            throw ExitCode(1)
        } catch let error as QuantError {
            note("error: \(error.description)")
            throw ExitCode(1)
        }
    }

    private func loadTokenizer() throws -> Qwen2Tokenizer {
        if let dir = tokenizer { return try Qwen2Tokenizer.load(directory: dir) }
        return try Qwen2Tokenizer.load(pack: try Pack(path: pack!))
    }
}
