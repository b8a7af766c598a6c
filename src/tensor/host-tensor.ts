/** A tensor as the rest of the code sees it: plain typed array + dims, no onnxruntime types. */
export type HostDtype = 'float32' | 'float16' | 'int32' | 'int64';

export type HostData = Float32Array | Uint16Array | Int32Array | BigInt64Array;

export interface HostTensor {
  type: HostDtype;
  data: HostData;
  dims: number[];
}

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function f32(data: Float32Array, dims: number[]): HostTensor {
  return { type: 'float32', data, dims };
}

export function describeTensor(t: HostTensor): string {
  return `${t.type}[${t.dims.join(',')}]`;
}
