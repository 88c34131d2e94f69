//! The Critical Path Method engine: calendars, dependency types, lags, constraints, roll-ups, floats, critical path, incremental recompute. Pure.
