// A one-node ONNX model (BatchNormalization) written as protobuf bytes by hand, so the benchmark
// can run onnxruntime-node without an .onnx file or the onnx package. Only the handful of
// ModelProto fields the model needs (field numbers from onnx/onnx.proto3).

class Writer {
  private readonly bytes: number[] = [];

  varint(v: number | bigint): this {
    let x = BigInt(v);
    if (x < 0n) x += 1n << 64n; // int64 two's complement
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) b |= 0x80;
      this.bytes.push(b);
    } while (x !== 0n);
    return this;
  }

  private key(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    return this.key(field, 0).varint(v);
  }

  float(field: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v, 0);
    this.key(field, 5);
    for (const x of b) this.bytes.push(x);
    return this;
  }

  bytesField(field: number, data: Uint8Array): this {
    this.key(field, 2).varint(data.length);
    for (const x of data) this.bytes.push(x);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytesField(field, Buffer.from(s, 'utf8'));
  }

  message(field: number, build: (w: Writer) => void): this {
    const w = new Writer();
    build(w);
    return this.bytesField(field, w.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR_FLOAT = 1; // AttributeProto.AttributeType.FLOAT
const ATTR_INT = 2;

function valueInfo(w: Writer, field: number, name: string, dims: readonly number[]): void {
  w.message(field, (v) => {
    v.string(1, name); // ValueInfoProto.name
    v.message(2, (t) => // ValueInfoProto.type: TypeProto
      t.message(1, (tt) => { // TypeProto.tensor_type
        tt.int(1, FLOAT); // elem_type
        tt.message(2, (sh) => { // shape: TensorShapeProto
          for (const d of dims) sh.message(1, (dim) => dim.int(1, d)); // dim { dim_value }
        });
      }));
  });
}

/**
 * BatchNormalization (opset 15) over an [N, C, ...] float32 tensor. Inputs X, scale, B,
 * input_mean, input_var; outputs Y, plus running_mean and running_var when training.
 */
export function batchNormModel(dims: readonly number[], training: boolean, eps = 1e-5, momentum = 0.9): Uint8Array {
  const C = dims[1];
  const m = new Writer();
  m.int(1, 8); // ir_version 8
  m.string(2, 'node-batchnorm-bench'); // producer_name
  m.message(8, (o) => { o.string(1, ''); o.int(2, 15); }); // opset_import { domain "", version 15 }
  m.message(7, (g) => { // graph
    g.message(1, (n) => { // node
      for (const i of ['X', 'scale', 'B', 'input_mean', 'input_var']) n.string(1, i);
      n.string(2, 'Y');
      if (training) { n.string(2, 'running_mean'); n.string(2, 'running_var'); }
      n.string(3, 'bn');
      n.string(4, 'BatchNormalization');
      n.message(5, (a) => { a.string(1, 'epsilon'); a.float(2, eps); a.int(20, ATTR_FLOAT); });
      n.message(5, (a) => { a.string(1, 'momentum'); a.float(2, momentum); a.int(20, ATTR_FLOAT); });
      n.message(5, (a) => { a.string(1, 'training_mode'); a.int(3, training ? 1 : 0); a.int(20, ATTR_INT); });
    });
    g.string(2, 'bn_graph');
    valueInfo(g, 11, 'X', dims);
    for (const i of ['scale', 'B', 'input_mean', 'input_var']) valueInfo(g, 11, i, [C]);
    valueInfo(g, 12, 'Y', dims);
    if (training) {
      valueInfo(g, 12, 'running_mean', [C]);
      valueInfo(g, 12, 'running_var', [C]);
    }
  });
  return m.finish();
}
