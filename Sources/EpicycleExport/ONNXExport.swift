import EpicycleCheckpoint
import EpicycleRuntime

/// An ONNX model (opset 17) of a model's inference computation, for ONNX Runtime and the tools that
/// read ONNX.
///
/// The graph takes `images`, float32 [batch, channels, height, width] (NCHW, the batch dimension
/// dynamic) with pixel values in [0, 1] (a byte / 255, channels in the dataset's order), normalises
/// them with the checkpoint's per-channel mean and standard deviation, and returns `logits`, float32
/// [batch, classes]. Batch norm is folded into the convolutions where one follows a convolution (see
/// `InferenceGraph`). The model's metadata holds the dataset, the class names in output order and the
/// normalisation.
///
/// Messages and field numbers follow onnx/onnx.proto (ONNX 1.12, IR version 8, the one of opset 17):
/// ModelProto ir_version = 1, producer_name = 2, producer_version = 3, doc_string = 6, graph = 7,
/// opset_import = 8, metadata_props = 14; OperatorSetIdProto domain = 1, version = 2;
/// GraphProto node = 1, name = 2, initializer = 5, input = 11, output = 12; NodeProto input = 1,
/// output = 2, name = 3, op_type = 4, attribute = 5; AttributeProto name = 1, i = 3, ints = 8,
/// type = 20 (INT = 2, INTS = 7); TensorProto dims = 1, data_type = 2 (FLOAT = 1, INT64 = 7), name = 8,
/// raw_data = 9 (little-endian); ValueInfoProto name = 1, type = 2; TypeProto tensor_type = 1;
/// TypeProto.Tensor elem_type = 1, shape = 2; TensorShapeProto dim = 1; Dimension dim_value = 1,
/// dim_param = 2; StringStringEntryProto key = 1, value = 2.
public struct ONNXExport {
    public static let opset = 17
    static let irVersion = 8

    /// The serialised ModelProto.
    public let bytes: [UInt8]

    /// - Parameters:
    ///   - model: its current weights and batch-norm statistics are exported.
    ///   - input: the checkpoint's input pipeline: image size, channels, normalisation, classes.
    ///   - producerVersion: the software version recorded in the file.
    /// - Throws: `RuntimeError.invalidSpec` when a layer has no inference description or the input
    ///   pipeline does not fit the model.
    public init(model: Model, input: InputPipeline, producerVersion: String = epicycleSoftwareVersion) throws {
        guard input.channels == model.spec.inputChannels, input.mean.count == input.channels,
              input.standardDeviation.count == input.channels else {
            throw RuntimeError.invalidSpec("the input pipeline has \(input.channels) channels (\(input.mean.count) means, "
                + "\(input.standardDeviation.count) deviations); the model takes \(model.spec.inputChannels)")
        }
        var builder = GraphBuilder()
        let normalised = builder.normalise(input)
        let logits = try builder.translate(try model.inferenceGraph(), input: normalised)
        let graph = ProtobufMessage { graph in
            graph.messages(1, builder.nodes)
            graph.string(2, model.spec.architecture)
            graph.messages(5, builder.initializers)
            graph.message(11, valueInfo("images", dimensions: [.symbolic("batch"), .fixed(input.channels), .fixed(input.height), .fixed(input.width)]))
            graph.message(12, valueInfo(logits, dimensions: [.symbolic("batch"), .fixed(model.spec.numClasses)]))
        }
        let metadata = [
            ("dataset", input.dataset),
            ("classes", input.classNames.joined(separator: "\n")),
            ("labels", input.classes.map(String.init).joined(separator: ",")),
            ("mean", input.mean.map { "\($0)" }.joined(separator: ",")),
            ("std", input.standardDeviation.map { "\($0)" }.joined(separator: ",")),
        ]
        bytes = ProtobufMessage { model in
            model.int(1, Self.irVersion)
            model.string(2, "epicycle")
            model.string(3, producerVersion)
            model.string(6, "images: float32 [batch, channels, height, width], pixel values in [0, 1], normalised in the graph; "
                + "logits: float32 [batch, classes], classes in the order of the 'classes' metadata (one name a line)")
            model.message(7, graph)
            model.message(8, ProtobufMessage { $0.string(1, ""); $0.int(2, Self.opset) })
            for (key, value) in metadata {
                model.message(14, ProtobufMessage { $0.string(1, key); $0.string(2, value) })
            }
        }.bytes
    }
}

private enum Dimension {
    case fixed(Int)
    case symbolic(String)
}

private func valueInfo(_ name: String, dimensions: [Dimension]) -> ProtobufMessage {
    let shape = ProtobufMessage { shape in
        for dimension in dimensions {
            shape.message(1, ProtobufMessage { entry in
                switch dimension {
                case let .fixed(size): entry.int(1, size)
                case let .symbolic(name): entry.string(2, name)
                }
            })
        }
    }
    return ProtobufMessage { info in
        info.string(1, name)
        info.message(2, ProtobufMessage { type in
            type.message(1, ProtobufMessage { $0.int(1, TensorType.float.rawValue); $0.message(2, shape) })
        })
    }
}

private enum TensorType: Int {
    case float = 1, int64 = 7
}

/// Collects ONNX nodes and initializers, naming every value and weight uniquely after its layer path.
private struct GraphBuilder {
    var nodes: [ProtobufMessage] = []
    var initializers: [ProtobufMessage] = []
    private var usedNames: Set<String> = ["images"]

    /// `base`, or `base_2`, `base_3`… when taken.
    private mutating func unique(_ base: String) -> String {
        var name = base, count = 1
        while usedNames.contains(name) {
            count += 1
            name = "\(base)_\(count)"
        }
        usedNames.insert(name)
        return name
    }

    private mutating func constant(_ name: String, shape: [Int], floats: [Float]) -> String {
        let name = unique(name)
        var raw = [UInt8]()
        raw.reserveCapacity(4 * floats.count)
        for value in floats { withUnsafeBytes(of: value.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
        initializers.append(tensor(name, shape: shape, type: .float, raw: raw))
        return name
    }

    private mutating func constant(_ name: String, int64s: [Int]) -> String {
        let name = unique(name)
        var raw = [UInt8]()
        for value in int64s { withUnsafeBytes(of: Int64(value).littleEndian) { raw.append(contentsOf: $0) } }
        initializers.append(tensor(name, shape: [int64s.count], type: .int64, raw: raw))
        return name
    }

    private func tensor(_ name: String, shape: [Int], type: TensorType, raw: [UInt8]) -> ProtobufMessage {
        ProtobufMessage { tensor in
            tensor.ints(1, shape)
            tensor.int(2, type.rawValue)
            tensor.string(8, name)
            tensor.bytes(9, raw)
        }
    }

    private enum Attribute {
        case int(String, Int)
        case ints(String, [Int])
    }

    /// Appends a node and returns the name of its output.
    private mutating func node(_ opType: String, _ inputs: [String], name: String, _ attributes: [Attribute] = []) -> String {
        let output = unique(name.isEmpty ? opType : name)
        nodes.append(ProtobufMessage { node in
            node.strings(1, inputs)
            node.string(2, output)
            node.string(3, output)
            node.string(4, opType)
            for attribute in attributes {
                node.message(5, ProtobufMessage { message in
                    switch attribute {
                    case let .int(name, value):
                        message.string(1, name)
                        message.int(3, value)
                        message.int(20, 2)
                    case let .ints(name, values):
                        message.string(1, name)
                        message.ints(8, values)
                        message.int(20, 7)
                    }
                })
            }
        })
        return output
    }

    /// (images − mean) / std per channel.
    mutating func normalise(_ input: InputPipeline) -> String {
        let shape = [input.channels, 1, 1]
        let centred = node("Sub", ["images", constant("input.mean", shape: shape, floats: input.mean)], name: "input.centred")
        return node("Div", [centred, constant("input.std", shape: shape, floats: input.standardDeviation)], name: "input.normalised")
    }

    /// Appends `graph`'s nodes, its input being `input`; returns the name of its output.
    mutating func translate(_ graph: InferenceGraph, input: String) throws -> String {
        var names = [input]
        for node in graph.nodes {
            let inputs = node.inputs.map { names[$0.index] }
            let path = node.path
            let output: String
            switch node.operation {
            case let .convolution(weight, bias, stride, padding, groups):
                let kernel = Array(weight.shape.suffix(2))
                output = self.node("Conv", inputs + [constant(path + ".weight", shape: weight.shape, floats: weight.scalars),
                                                     constant(path + ".bias", shape: [bias.count], floats: bias)],
                                   name: path, [.ints("kernel_shape", kernel), .ints("strides", [stride, stride]),
                                                .ints("pads", [padding, padding, padding, padding]), .int("group", groups)])
            case let .channelAffine(scale, shift):
                let shape = [scale.count, 1, 1]
                let scaled = self.node("Mul", inputs + [constant(path + ".scale", shape: shape, floats: scale)], name: path + ".scaled")
                output = self.node("Add", [scaled, constant(path + ".shift", shape: shape, floats: shift)], name: path)
            case .relu:
                output = self.node("Relu", inputs, name: path)
            case .add:
                output = self.node("Add", inputs, name: path)
            case let .maxPool(kernelSize, stride, padding):
                output = self.node("MaxPool", inputs, name: path, [.ints("kernel_shape", [kernelSize, kernelSize]),
                                                                   .ints("strides", [stride, stride]),
                                                                   .ints("pads", [padding, padding, padding, padding])])
            case let .averagePool(kernelSize, stride, padding, countIncludePad):
                output = self.node("AveragePool", inputs, name: path, [.ints("kernel_shape", [kernelSize, kernelSize]),
                                                                       .ints("strides", [stride, stride]),
                                                                       .ints("pads", [padding, padding, padding, padding]),
                                                                       .int("count_include_pad", countIncludePad ? 1 : 0)])
            case .globalAveragePool:
                let pooled = self.node("GlobalAveragePool", inputs, name: path + ".spatial")
                output = self.node("Flatten", [pooled], name: path, [.int("axis", 1)])
            case .flatten:
                output = self.node("Flatten", inputs, name: path, [.int("axis", 1)])
            case let .linear(weight, bias):
                output = self.node("Gemm", inputs + [constant(path + ".weight", shape: weight.shape, floats: weight.scalars),
                                                     constant(path + ".bias", shape: [bias.count], floats: bias)],
                                   name: path, [.int("transB", 1)])
            case let .subsampleAndPadChannels(stride, front, back):
                let sliced = self.node("Slice", inputs + [constant(path + ".starts", int64s: [0, 0]),
                                                          constant(path + ".ends", int64s: [Int(Int64.max), Int(Int64.max)]),
                                                          constant(path + ".axes", int64s: [2, 3]),
                                                          constant(path + ".steps", int64s: [stride, stride])],
                                       name: path + ".subsampled")
                output = self.node("Pad", [sliced, constant(path + ".pads", int64s: [0, front, 0, 0, 0, back, 0, 0])], name: path)
            }
            names.append(output)
        }
        // The graph's output is named `logits` whatever its last layer.
        return node("Identity", [names.last!], name: "logits")
    }
}
