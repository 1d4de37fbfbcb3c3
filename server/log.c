/* log: not yet written */
