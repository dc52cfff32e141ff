//! berth CNI runner and built-in bridge network (built in a later issue).
