/// Help text for the command-line tools.
public enum HelpText {
    /// Joins the hard-wrapped lines of each prose paragraph into one line, so the argument parser wraps
    /// the text at the terminal's width instead of breaking our lines a second time. A line is kept on its
    /// own when it is empty or indented (examples, lists); a line that starts with a dash or follows one
    /// ending with a colon starts a new paragraph.
    public static func reflow(_ text: String) -> String {
        var out: [String] = []
        var joinable = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let standalone = line.isEmpty || line.first == " "
            if !standalone, joinable, line.first != "-", let last = out.popLast() {
                out.append(last + " " + line)
            } else {
                out.append(String(line))
            }
            joinable = !standalone && line.last != ":"
        }
        return out.joined(separator: "\n")
    }
}
