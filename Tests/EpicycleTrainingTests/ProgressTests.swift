@testable import EpicycleTraining
import Foundation
import Testing

/// The progress line's text: tqdm's figures, within the terminal's width, the knob values giving way first.
@Suite struct ProgressTests {
    static let status = ProgressStatus(
        phase: "pretrain", epoch: 2, epochs: 30, batch: 120, batches: 266, images: 120 * 128, elapsed: 12.4, loss: 0.4321,
        knobs: ["learning_rate": 0.0832, "weight_decay": 0.0005, "temperature": 1.25, "augmentation_strength": 0.4],
        extra: "teacher 31% of step (2000 img/s)")

    @Test func showsPercentageElapsedETAAndThroughput() {
        let line = Self.status.line(width: 1000)
        #expect(line.hasPrefix("pretrain 3/30  45%|"), "\(line)")
        // 12.4 s for 120 of 266 batches: 15.1 s left; 15,360 images in 12.4 s.
        #expect(line.contains("| 120/266 [00:12<00:15, 1238 img/s] loss 0.4321  "), "\(line)")
        #expect(line.contains("augmentation_strength 0.4  learning_rate 0.0832  temperature 1.25  weight_decay 5.000e-04  teacher 31%"))
        #expect(line.hasSuffix("(2000 img/s)"))
    }

    @Test func neverWiderThanAsked() {
        for width in [0, 1, 10, 30, 40, 60, 79, 80, 100, 120, 200] {
            let line = Self.status.line(width: width)
            #expect(line.count <= width, "\(width): \(line.count) characters")
        }
    }

    @Test func theKnobValuesGiveWayFirst() {
        let whole = Self.status.line(width: 1000)
        let core = whole.components(separatedBy: "loss 0.4321")[0] + "loss 0.4321"
        // The figures and the full 20-cell bar stay; the knobs are cut, marked with an ellipsis.
        let cut = Self.status.line(width: 119)
        #expect(cut.hasPrefix(core + "  augmentation_strength") && cut.hasSuffix("…") && cut.count == 119, "\(cut)")
        #expect(core.components(separatedBy: "|")[1].count == 20)
        // 80 columns: no room for knobs, so none; then the bar shrinks.
        let eighty = Self.status.line(width: 79)
        #expect(eighty.hasPrefix("pretrain 3/30  45%|") && eighty.hasSuffix("] loss 0.4321"), "\(eighty)")
        #expect(!eighty.contains("learning_rate") && eighty.components(separatedBy: "|")[1].count < 20, "\(eighty)")
        // Narrower than the figures: no bar, and the figures are cut last.
        let narrow = Self.status.line(width: 40)
        #expect(narrow == String((Self.status.line(width: 1000).components(separatedBy: "|")[0]
                                  + Self.status.line(width: 1000).components(separatedBy: "|")[2].components(separatedBy: "  ")[0]).prefix(40)),
                "\(narrow)")
    }

    @Test func anEpochLineWrapsBetweenFields() {
        let line = "pretrain epoch 1/3  train loss 1.9695 top-1 32.92  val (BN recal.) loss 1.4800 top-1 53.23  2119 img/s  learning_rate 0.02"
        #expect(wrappedAtFields(line, width: 200) == line)
        #expect(wrappedAtFields(line, width: 60) == """
            pretrain epoch 1/3  train loss 1.9695 top-1 32.92
              val (BN recal.) loss 1.4800 top-1 53.23  2119 img/s
              learning_rate 0.02
            """)
        // A field wider than the line stands alone rather than being cut.
        #expect(wrappedAtFields("a  a-very-long-field  b", width: 8) == "a\n  a-very-long-field\n  b")
    }

    @Test func barFillsInEighths() {
        #expect(bar(0, width: 4) == "    ")
        #expect(bar(1, width: 4) == "████")
        #expect(bar(0.5, width: 4) == "██  ")
        #expect(bar(0.3, width: 4) == "█▏  ")
        #expect(bar(2, width: 3) == "███")
    }

    @Test func clockLikeTqdm() {
        #expect(clock(0) == "00:00" && clock(42.4) == "00:42" && clock(187) == "03:07" && clock(3729) == "1:02:09")
        #expect(clock(.infinity) == "00:00" && clock(-5) == "00:00")
    }

    @Test(.enabled(if: isatty(STDERR_FILENO) == 0, "standard error is a terminal, whose width comes first"))
    func widthFromColumnsWhenNotATerminal() {
        #expect(terminalColumns(environment: ["COLUMNS": "123"]) == 123)
        #expect(terminalColumns(environment: ["COLUMNS": "junk"]) == 80 && terminalColumns(environment: [:]) == 80)
    }
}
