/* rpc: not yet written */
