/// Every tensor of a diffusers `AutoencoderKLQwenImage` checkpoint for a config: hub names and shapes,
/// in the order upstream registers them. Used to make synthetic full-size checkpoints (benchmarks) and
/// to check a checkpoint is complete.
extension VAEConfig {
    public func hubTensorShapes() -> [(name: String, shape: [Int])] {
        var out: [(String, [Int])] = []
        func conv3(_ n: String, _ cin: Int, _ cout: Int) { out += [(n + ".weight", [cout, cin, 3, 3, 3]), (n + ".bias", [cout])] }
        func norm(_ n: String, _ c: Int, images: Bool = false) { out.append((n + ".gamma", images ? [c, 1, 1] : [c, 1, 1, 1])) }
        func res(_ n: String, _ cin: Int, _ cout: Int) {
            norm(n + ".norm1", cin)
            conv3(n + ".conv1", cin, cout)
            norm(n + ".norm2", cout)
            conv3(n + ".conv2", cout, cout)
            if cin != cout { out += [(n + ".conv_shortcut.weight", [cout, cin, 1, 1, 1]), (n + ".conv_shortcut.bias", [cout])] }
        }
        func attn(_ n: String, _ c: Int) {
            norm(n + ".norm", c, images: true)
            out += [(n + ".to_qkv.weight", [3 * c, c, 1, 1]), (n + ".to_qkv.bias", [3 * c]),
                    (n + ".proj.weight", [c, c, 1, 1]), (n + ".proj.bias", [c])]
        }
        func resample(_ n: String, _ c: Int, cout: Int, time: Int?) {
            out += [(n + ".resample.1.weight", [cout, c, 3, 3]), (n + ".resample.1.bias", [cout])]
            if let t = time { out += [(n + ".time_conv.weight", [t, c, 3, 1, 1]), (n + ".time_conv.bias", [t])] }
        }
        let b = baseDim, m = dimMult
        // Encoder.
        let ed = [b] + m.map { b * $0 }
        conv3("encoder.conv_in", inputChannels, ed[0])
        var k = 0
        for i in 0..<m.count {
            var cin = ed[i]
            for _ in 0..<numResBlocks { res("encoder.down_blocks.\(k)", cin, ed[i + 1]); k += 1; cin = ed[i + 1] }
            if i != m.count - 1 {
                resample("encoder.down_blocks.\(k)", ed[i + 1], cout: ed[i + 1], time: temperalDownsample[i] ? ed[i + 1] : nil)
                k += 1
            }
        }
        let em = ed.last!
        res("encoder.mid_block.resnets.0", em, em)
        attn("encoder.mid_block.attentions.0", em)
        res("encoder.mid_block.resnets.1", em, em)
        norm("encoder.norm_out", em)
        conv3("encoder.conv_out", em, 2 * zDim)
        out += [("quant_conv.weight", [2 * zDim, 2 * zDim, 1, 1, 1]), ("quant_conv.bias", [2 * zDim])]
        out += [("post_quant_conv.weight", [zDim, zDim, 1, 1, 1]), ("post_quant_conv.bias", [zDim])]
        // Decoder.
        let dd = [b * m.last!] + m.reversed().map { b * $0 }
        let up = Array(temperalDownsample.reversed())
        conv3("decoder.conv_in", zDim, dd[0])
        res("decoder.mid_block.resnets.0", dd[0], dd[0])
        attn("decoder.mid_block.attentions.0", dd[0])
        res("decoder.mid_block.resnets.1", dd[0], dd[0])
        for i in 0..<m.count {
            var cin = i > 0 ? dd[i] / 2 : dd[i]
            for j in 0...numResBlocks { res("decoder.up_blocks.\(i).resnets.\(j)", cin, dd[i + 1]); cin = dd[i + 1] }
            if i != m.count - 1 {
                resample("decoder.up_blocks.\(i).upsamplers.0", dd[i + 1], cout: dd[i + 1] / 2, time: up[i] ? 2 * dd[i + 1] : nil)
            }
        }
        norm("decoder.norm_out", dd.last!)
        conv3("decoder.conv_out", dd.last!, inputChannels)
        return out
    }
}
