import Quant
/// Models, tokenizer, image I/O and preprocessing, the checkpoint name table and the converter.
public enum QwenImageInfo {
    public static let version = "0.1.0"
}
