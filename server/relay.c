/* relay: not yet written */
