// The fleet simulator (`vmcp sim`): lean raw-protocol simulated vehicles on one shared loop.
export * from './args.js';
export * from './fleet.js';
export * from './histogram.js';
export * from './limits.js';
export * from './motion.js';
export * from './stats.js';
export * from './vehicle.js';
export * from './verify.js';
