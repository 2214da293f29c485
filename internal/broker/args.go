package broker

// validateQueueArgs checks the types of the queue arguments Herald knows;
// unknown x- arguments are accepted and ignored, as RabbitMQ does.
func validateQueueArgs(args Table) error {
	for _, k := range []string{"x-expires", "x-message-ttl", "x-max-length", "x-max-length-bytes", "x-max-priority", "x-delivery-limit"} {
		v, ok := args[k]
		if !ok {
			continue
		}
		n, isInt := asInt(v)
		if !isInt {
			return errorf(CodePreconditionFailed, "invalid arg '%s': %v is not an integer", k, v)
		}
		if n < 0 {
			return errorf(CodePreconditionFailed, "invalid arg '%s': %d is negative", k, n)
		}
	}
	if v, ok := args["x-queue-type"]; ok {
		if s, _ := v.(string); s != "classic" {
			return errorf(CodePreconditionFailed, "invalid arg 'x-queue-type': '%v' is not supported yet (only 'classic')", v)
		}
	}
	return nil
}
