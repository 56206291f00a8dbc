package dbc_test

import (
	"fmt"

	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

const exampleDBC = `BO_ 2147484010 DOORS: 8 BCM
 SG_ DriverLocked : 0|1@1+ (1,0) [0|1] "" TCU
 SG_ Speed : 15|16@0+ (0.01,0) [0|655.35] "km/h" TCU
VAL_ 2147484010 DriverLocked 0 "unlocked" 1 "locked" ;
BO_ 1 BROKEN: 8 BCM
 SG_ Bad : 0|x@1+ (1,0) [0|1] "" TCU
`

func ExampleParse() {
	db, warns, err := dbc.Parse("body.dbc", []byte(exampleDBC))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, w := range warns {
		fmt.Println(w)
	}
	m, _ := db.MessageByID(0x16A, true)
	vals, _ := m.Decode([]byte{0x01, 0x30, 0x39, 0, 0, 0, 0, 0})
	for _, v := range vals {
		fmt.Printf("%s.%s = %g %s%s\n", m.Name, v.Signal.Name, v.Phys, v.Signal.Unit, v.Label)
	}
	// Output:
	// body.dbc:6: skipped SG_: syntax error: bad integer "x"
	// DOORS.DriverLocked = 1 locked
	// DOORS.Speed = 123.45 km/h
}

func ExampleMessage_Encode() {
	db, _, _ := dbc.Parse("body.dbc", []byte(exampleDBC))
	m, _ := db.Message("DOORS")
	data, err := m.Encode(map[string]float64{"DriverLocked": 1, "Speed": 123.45})
	fmt.Printf("% x %v\n", data, err)
	_, err = m.Encode(map[string]float64{"Speed": 700})
	fmt.Println(err)
	// Output:
	// 01 30 39 00 00 00 00 00 <nil>
	// encode DOORS.Speed = 700: outside [0, 655.35]: value out of range
}
