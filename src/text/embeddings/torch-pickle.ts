/**
 * A safe reader for the pickle inside a torch.save file: it builds plain data (dicts, lists, strings, numbers)
 * and tensor *references*, and executes nothing.
 *
 * Python's pickle is a small stack machine whose GLOBAL/REDUCE opcodes call arbitrary functions — loading a
 * hostile .pt file with torch.load runs code. Here every opcode is interpreted by us, and the only "functions"
 * are a fixed list of names that we recognise and interpret as data (cf. torch's own `weights_only` unpickler,
 * torch/_weights_only_unpickler.py):
 *   torch._utils._rebuild_tensor_v2 / _rebuild_tensor       → a tensor view of a storage (offset, shape, stride)
 *   torch._utils._rebuild_parameter[_with_state]            → the tensor inside an nn.Parameter
 *   collections.OrderedDict                                 → a dict
 *   copyreg._reconstructor / NEWOBJ of nn.ParameterDict     → an inert object whose state is a dict (old TI files)
 *   torch.{Float,Half,BFloat16,Double}Storage               → only inside a persistent id, naming a storage dtype
 * Any other global, or an opcode outside the protocol-0..4 subset torch's pickler (protocol 2) and the
 * `string_to_param` dicts need, is refused with EMBEDDING_INVALID naming it. Storage bytes are not in the pickle:
 * a persistent id ('storage', type, key, location, numel) points at the archive entry `data/<key>`.
 *
 * Reference: CPython Lib/pickle.py (opcodes, _Unpickler.load_*), torch/serialization.py (_save persistent_id,
 * _load) and torch/_utils.py (_rebuild_tensor_v2).
 */
import { LoraserveError } from '../../core/errors.js';
import type { FloatDtype } from './float-data.js';

export type PyKey = string | number | bigint | boolean | null;

export interface TorchStorage {
  kind: 'storage';
  dtype: FloatDtype;
  key: string;
  numel: number;
}

export interface TorchTensor {
  kind: 'tensor';
  storage: TorchStorage;
  /** In elements of the storage. */
  offset: number;
  shape: number[];
  stride: number[];
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | { kind: 'bytes'; data: Uint8Array }
  | { kind: 'list'; items: PyValue[] }
  | { kind: 'tuple'; items: PyValue[] }
  | { kind: 'dict'; entries: Map<PyKey, PyValue> }
  | { kind: 'global'; name: string }
  | { kind: 'object'; cls: string; state: PyValue }
  | TorchStorage
  | TorchTensor;

const STORAGE_TYPES: Record<string, FloatDtype> = {
  'torch.FloatStorage': 'float32',
  'torch.HalfStorage': 'float16',
  'torch.BFloat16Storage': 'bfloat16',
  'torch.DoubleStorage': 'float64',
};
const CALLABLES = new Set([
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'collections.OrderedDict',
  'copyreg._reconstructor',
]);
/** Classes that may be instantiated as inert objects (state only). */
const INERT_CLASSES = new Set(['torch.nn.modules.container.ParameterDict']);
const OBJECT_BASES = new Set(['builtins.object', '__builtin__.object']);

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

/** Interprets `bytes` (a data.pkl) and returns the unpickled value. */
export function readTorchPickle(bytes: Uint8Array, file: string): PyValue {
  const bad = (why: string): LoraserveError => new LoraserveError('EMBEDDING_INVALID', `${file}: refused pickle content (${why})`, { file });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder('utf-8', { fatal: false });
  const latin1 = new TextDecoder('latin1');
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;

  const need = (n: number): void => {
    if (pos + n > bytes.byteLength) throw bad('truncated');
  };
  const u8 = (): number => (need(1), bytes[pos++]);
  const u16 = (): number => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = (): number => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const i32 = (): number => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('length too large');
    return Number(v);
  };
  const take = (n: number): Uint8Array => (need(n), (pos += n), bytes.subarray(pos - n, pos));
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw bad('truncated text opcode');
    const s = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw bad('stack underflow');
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw bad('stack underflow');
    return v;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) throw bad('no mark');
    const items = stack.splice(m) as StackItem[];
    items.shift(); // the mark itself
    if (items.some((x) => x === MARK)) throw bad('nested mark');
    return items as PyValue[];
  };
  const pushMark = (): void => {
    marks.push(stack.length);
    stack.push(MARK);
  };
  const dictOf = (v: PyValue): Map<PyKey, PyValue> => {
    if (v === null || typeof v !== 'object' || v.kind !== 'dict') throw bad('SETITEM on a non-dict');
    return v.entries;
  };
  const keyOf = (k: PyValue): PyKey => {
    if (k === null || typeof k !== 'object') return k;
    throw bad(`dict key of type ${k.kind}`);
  };
  const listOf = (v: PyValue): PyValue[] => {
    if (v === null || typeof v !== 'object' || v.kind !== 'list') throw bad('APPEND on a non-list');
    return v.items;
  };
  const global = (module: string, name: string): PyValue => {
    const full = `${module}.${name}`;
    if (CALLABLES.has(full) || INERT_CLASSES.has(full) || OBJECT_BASES.has(full) || full in STORAGE_TYPES) return { kind: 'global', name: full };
    throw bad(`global ${full} is not allowed`);
  };
  const memoPut = (i: number): void => {
    memo.set(i, top());
  };
  const memoGet = (i: number): void => {
    if (!memo.has(i)) throw bad(`memo ${i} is not set`);
    stack.push(memo.get(i)!);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw bad('pickle protocol newer than 5');
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) throw bad('stack not empty at STOP');
        return pop();
      case 0x28: // MARK
        pushMark();
        break;
      case 0x30: // POP
        if (stack[stack.length - 1] === MARK) {
          stack.pop();
          marks.pop();
        } else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        const n = u8();
        const b = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x49: {
        // INT (protocol 0): "I01\n"/"I00\n" are True/False
        const s = line();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else if (/^[+-]?\d+$/.test(s)) stack.push(Number(s));
        else throw bad('bad INT');
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(text.decode(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text.decode(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text.decode(take(u64())));
        break;
      case 0x54: // BINSTRING (py2 str)
        stack.push(latin1.decode(take(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(take(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push({ kind: 'bytes', data: take(u32()) });
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push({ kind: 'bytes', data: take(u8()) });
        break;
      case 0x7d: // EMPTY_DICT
        stack.push({ kind: 'dict', entries: new Map() });
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const entries = new Map<PyKey, PyValue>();
        for (let i = 0; i + 1 < items.length; i += 2) entries.set(keyOf(items[i]), items[i + 1]);
        stack.push({ kind: 'dict', entries });
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        dictOf(top()).set(keyOf(k), v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        const d = dictOf(top());
        for (let i = 0; i + 1 < items.length; i += 2) d.set(keyOf(items[i]), items[i + 1]);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push({ kind: 'list', items: [] });
        break;
      case 0x6c: // LIST
        stack.push({ kind: 'list', items: popMark() });
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        listOf(top()).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        listOf(top()).push(...items);
        break;
      }
      case 0x29: // EMPTY_TUPLE
        stack.push({ kind: 'tuple', items: [] });
        break;
      case 0x74: // TUPLE
        stack.push({ kind: 'tuple', items: popMark() });
        break;
      case 0x85: // TUPLE1
        stack.push({ kind: 'tuple', items: [pop()] });
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push({ kind: 'tuple', items: [pop(), b] });
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push({ kind: 'tuple', items: [pop(), b, c] });
        break;
      }
      case 0x71: // BINPUT
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size);
        break;
      case 0x70: // PUT
        memoPut(Number(line()));
        break;
      case 0x68: // BINGET
        memoGet(u8());
        break;
      case 0x6a: // LONG_BINGET
        memoGet(u32());
        break;
      case 0x67: // GET
        memoGet(Number(line()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw bad('STACK_GLOBAL without strings');
        stack.push(global(module, name));
        break;
      }
      case 0x51: {
        // BINPERSID
        stack.push(persistentStorage(pop(), bad));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args, bad));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args)
        const args = pop();
        const cls = pop();
        if (!isGlobal(cls) || !INERT_CLASSES.has(cls.name) || !isTuple(args) || args.items.length !== 0) throw bad('NEWOBJ of a class that is not allowed');
        stack.push({ kind: 'object', cls: cls.name, state: null });
        break;
      }
      case 0x62: {
        // BUILD: obj.__setstate__(state) / obj.__dict__.update(state)
        const state = pop();
        const obj = top();
        if (obj !== null && typeof obj === 'object' && obj.kind === 'object') obj.state = state;
        else if (state !== null) throw bad(`BUILD on ${describe(obj)}`);
        break;
      }
      default:
        throw bad(`pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${pos - 1} is not supported`);
    }
  }
}

function isGlobal(v: PyValue): v is { kind: 'global'; name: string } {
  return v !== null && typeof v === 'object' && v.kind === 'global';
}
function isTuple(v: PyValue): v is { kind: 'tuple'; items: PyValue[] } {
  return v !== null && typeof v === 'object' && v.kind === 'tuple';
}
function describe(v: PyValue): string {
  return v === null ? 'None' : typeof v === 'object' ? v.kind : typeof v;
}
function intList(v: PyValue): number[] | undefined {
  if (!isTuple(v) && !(v !== null && typeof v === 'object' && v.kind === 'list')) return undefined;
  const items = (v as { items: PyValue[] }).items;
  return items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0) ? (items as number[]) : undefined;
}

/** torch.serialization's persistent id: ('storage', storage_type, key, location, numel). */
function persistentStorage(pid: PyValue, bad: (why: string) => LoraserveError): TorchStorage {
  if (!isTuple(pid) || pid.items.length !== 5 || pid.items[0] !== 'storage') throw bad('persistent id is not a torch storage reference');
  const [, type, key, , numel] = pid.items;
  if (!isGlobal(type) || !(type.name in STORAGE_TYPES)) throw bad(`storage type ${isGlobal(type) ? type.name : describe(type)} is not a float storage`);
  if (typeof key !== 'string' || !/^[A-Za-z0-9_]+$/.test(key)) throw bad('storage key is not a plain name');
  if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) throw bad('storage size is not a count');
  return { kind: 'storage', dtype: STORAGE_TYPES[type.name], key, numel };
}

/** The allowed "calls", interpreted as data. */
function reduce(fn: PyValue, args: PyValue, bad: (why: string) => LoraserveError): PyValue {
  if (!isGlobal(fn) || !CALLABLES.has(fn.name)) throw bad(`call of ${isGlobal(fn) ? fn.name : describe(fn)}`);
  if (!isTuple(args)) throw bad(`${fn.name} called without an argument tuple`);
  const a = args.items;
  switch (fn.name) {
    case 'torch._utils._rebuild_tensor_v2':
    case 'torch._utils._rebuild_tensor': {
      const [storage, offset] = a;
      const shape = intList(a[2]);
      const stride = intList(a[3]);
      if (storage === null || typeof storage !== 'object' || storage.kind !== 'storage') throw bad('tensor without a storage');
      if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0 || !shape || !stride || shape.length !== stride.length) {
        throw bad('tensor with a bad offset, shape or stride');
      }
      return { kind: 'tensor', storage, offset, shape, stride };
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state': {
      const t = a[0];
      if (t === null || typeof t !== 'object' || t.kind !== 'tensor') throw bad('parameter without a tensor');
      return t;
    }
    case 'collections.OrderedDict':
      if (a.length !== 0) throw bad('OrderedDict with arguments');
      return { kind: 'dict', entries: new Map() };
    case 'copyreg._reconstructor': {
      const [cls, base, state] = a;
      if (!isGlobal(cls) || !INERT_CLASSES.has(cls.name) || !isGlobal(base) || !OBJECT_BASES.has(base.name) || state !== null) {
        throw bad('copyreg._reconstructor of a class that is not allowed');
      }
      return { kind: 'object', cls: cls.name, state: null };
    }
  }
  throw bad(`call of ${fn.name}`);
}
