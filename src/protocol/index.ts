// The pure VMCP codec: constants, CRC, framing, reassembly, TLV and typed messages. No I/O here.
export * from './constants.js';
export * from './crc16.js';
export * from './bytes.js';
export * from './frame.js';
export * from './assembler.js';
export * from './tlv.js';
export * from './registry.js';
export * from './messages/index.js';
export * from './record.js';
