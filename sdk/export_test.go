package sdk

// ResetBatchProperties forgets that a host lacked weft.get_properties.
func ResetBatchProperties() { noBatchPropertiesHost = false }
