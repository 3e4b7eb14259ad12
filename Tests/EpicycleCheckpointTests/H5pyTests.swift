import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// A Python with h5py and NumPy, e.g. /work/venv/bin/python; the interop test runs only when it is set.
private let python = ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"]

/// Reads a checkpoint with h5py the way a PyTorch user would and prints what it sees as JSON, with
/// floats as their bit patterns so the comparison is exact.
private let h5pyReader = #"""
import json, sys
import h5py, numpy as np

def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

def tensors(group):
    return [[name, list(group[name].shape), str(group[name].dtype),
             np.asarray(group[name][()]).reshape(-1).view(np.uint32 if group[name].dtype == np.float32 else np.uint64)
                 .astype(str).tolist()]
            for name in group]

with h5py.File(sys.argv[1], "r") as f:
    training = f["training"]
    metrics = training["metrics"]
    print(json.dumps({
        "root": {key: text(f.attrs[key]) for key in f.attrs},
        "architecture": text(f["model"].attrs["architecture"]),
        "num_classes": int(f["model"].attrs["num_classes"]),
        "parameters": tensors(f["model/parameters"]),
        "buffers": tensors(f["model/buffers"]),
        "optimizer": {key: text(f["optimizer"].attrs[key]) for key in f["optimizer"].attrs},
        "optimizer_state": tensors(f["optimizer/state"]),
        "training": {key: text(training.attrs[key]) for key in training.attrs},
        "rng_state": [str(word) for word in training["rng_state"][()]],
        "metrics_columns": [text(name) for name in metrics.attrs["columns"]],
        "metrics": [[str(bits) for bits in row] for row in metrics[()].view(np.uint64)],
        "adapters": tensors(f["adapters/parameters"]) + tensors(f["adapters/buffers"]),
    }))
"""#

/// Reads `/data` with plain h5py and NumPy, as a user preparing inputs for the model would.
private let h5pyDataReader = #"""
import json, sys
import h5py, numpy as np

with h5py.File(sys.argv[1], "r") as f:
    d = f["data"]
    print(json.dumps({
        "dataset": d.attrs["dataset"].decode(),
        "shape": [int(d.attrs[key]) for key in ("height", "width", "channels")],
        "mean": d["mean"][:].view(np.uint32).tolist(), "mean_dtype": str(d["mean"].dtype),
        "std": d["std"][:].view(np.uint32).tolist(), "std_dtype": str(d["std"].dtype),
        "classes": [int(x) for x in d["classes"][:]], "classes_dtype": str(d["classes"].dtype),
        "class_names": [n.decode() for n in d.attrs["class_names"]],
    }))
"""#

/// Runs `script` on `file` with the peer Python and decodes the JSON object it prints.
private func runPython(_ script: String, _ file: String) throws -> [String: Any] {
    try #require(try runPeerScript(script, [file]) as? [String: Any])
}

extension CheckpointTests {
    @Suite struct H5py {
        @Test(.enabled(if: python != nil, "set EPICYCLE_PYTHON to a Python with h5py"))
        func h5pyReadsTheInputPipeline() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try makeFullCheckpoint().write(to: folder + "/data.h5")
            let seen = try runPython(h5pyDataReader, folder + "/data.h5")
            let input = makeInputPipeline()
            #expect(seen["dataset"] as? String == "cifar10")
            #expect(seen["shape"] as? [Int] == [32, 32, 3])
            // Bit patterns, so the comparison is exact.
            #expect(seen["mean"] as? [Int] == input.mean.map { Int($0.bitPattern) })
            #expect(seen["std"] as? [Int] == input.standardDeviation.map { Int($0.bitPattern) })
            #expect(seen["classes"] as? [Int] == [3, 5])
            #expect([seen["mean_dtype"], seen["std_dtype"], seen["classes_dtype"]] as? [String] == ["float32", "float32", "int64"])
            #expect(seen["class_names"] as? [String] == ["cat", ""])
        }

        @Test(.enabled(if: python != nil, "set EPICYCLE_PYTHON to a Python with h5py"))
        func h5pySeesStateDictNamesShapesAndExactValues() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let checkpoint = makeFullCheckpoint()
            try checkpoint.write(to: folder + "/interop.h5")

            let seen = try runPython(h5pyReader, folder + "/interop.h5")

            func tensorRows(_ tensors: [(name: String, tensor: Tensor)]) -> [[String]] {
                tensors.map { [$0.name, describeShape($0.tensor.shape), "float32",
                               $0.tensor.scalars.map { String($0.bitPattern) }.joined(separator: ",")] }
            }
            func bufferRows(_ buffers: [(name: String, value: Buffer.Value)]) -> [[String]] {
                buffers.map { buffer in
                    switch buffer.value {
                    case let .float32(tensor): return tensorRows([(buffer.name, tensor)])[0]
                    case let .int64(count): return [buffer.name, "[]", "int64", String(UInt64(bitPattern: count))]
                    }
                }
            }
            func seenRows(_ key: String) -> [[String]] {
                (seen[key] as? [[Any]] ?? []).map { row in
                    [row[0] as? String ?? "", describeShape(row[1] as? [Int] ?? [-1]), row[2] as? String ?? "",
                     (row[3] as? [String] ?? []).joined(separator: ",")]
                }
            }

            #expect(seen["root"] as? [String: String] == [
                "format": "epicycle-checkpoint", "format_version": "1", "created": "2026-05-14T09:30:12Z",
                "software_version": epicycleSoftwareVersion])
            #expect(seen["architecture"] as? String == checkpoint.architecture)
            #expect(seen["num_classes"] as? Int == 2)
            // Names in state_dict order, directly under /model/parameters, with exact values.
            #expect(seenRows("parameters") == tensorRows(checkpoint.model.parameters))
            #expect(seenRows("buffers") == bufferRows(checkpoint.model.buffers))
            #expect(seenRows("optimizer_state") == tensorRows(checkpoint.optimizer?.tensors ?? []))
            #expect(seenRows("adapters") == tensorRows(checkpoint.adapters?.parameters ?? [])
                    + bufferRows(checkpoint.adapters?.buffers ?? []))
            #expect(seen["optimizer"] as? [String: String] == [
                "kind": "sgd", "lr": "0.1", "momentum": "0.9", "weight_decay": "0.0005", "step": "4680"])
            let training = try #require(checkpoint.training)
            #expect(seen["training"] as? [String: String] == [
                "program": "pretrain", "epoch": "2", "step": "4680", "cycle_position": "\(training.cyclePosition)",
                "seed": "\(training.seed)", "recipe": training.recipe, "best_top1": "91.2"])
            #expect(seen["rng_state"] as? [String] == training.rngState.map(String.init))
            #expect(seen["metrics_columns"] as? [String] == training.metrics.columns)
            #expect(seen["metrics"] as? [[String]] == training.metrics.rows.map { $0.map { String($0.bitPattern) } })
        }
    }
}
